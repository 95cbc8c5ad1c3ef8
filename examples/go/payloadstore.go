// Package payloadstore is a cgo binding of libpayloadstore (include/payload_store.h).
//
// Build the library first (cargo build --release in the repository root);
// the cgo flags below link target/release/libpayloadstore.so.
package payloadstore

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -lpayloadstore -Wl,-rpath,${SRCDIR}/../../target/release
#include <stdlib.h>
#include "payload_store.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// ErrNotFound is returned by Get when the id has no payload.
var ErrNotFound = errors.New("payloadstore: not found")

// Error is a failed call's status code.
type Error struct{ Status int32 }

func (e *Error) Error() string {
	return fmt.Sprintf("payloadstore: %s (status %d)", C.GoString(C.ps_status_str(C.ps_status(e.Status))), e.Status)
}

// Status codes a caller may want to test with errors.Is / errors.As.
const (
	StatusLocked             = int32(C.PS_ERR_LOCKED)
	StatusInvalidLocation    = int32(C.PS_ERR_INVALID_LOCATION)
	StatusReadOnly           = int32(C.PS_ERR_READ_ONLY)
	StatusCorrupt            = int32(C.PS_ERR_CORRUPT)
	StatusChecksumMismatch   = int32(C.PS_ERR_CHECKSUM_MISMATCH)
	StatusInvalidCompression = int32(C.PS_ERR_INVALID_COMPRESSION)
	StatusInvalidArgument    = int32(C.PS_ERR_INVALID_ARGUMENT)
)

// Is lets errors.Is(err, &Error{Status: StatusLocked}) work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

func statusErr(st C.ps_status) error {
	switch st {
	case C.PS_OK:
		return nil
	case C.PS_NOT_FOUND:
		return ErrNotFound
	default:
		return &Error{Status: int32(st)}
	}
}

// ID is a 128-bit edge id.
type ID struct{ Hi, Lo uint64 }

func (id ID) c() C.ps_edge_id { return C.ps_edge_id{hi: C.uint64_t(id.Hi), lo: C.uint64_t(id.Lo)} }

// Location is where a payload is stored (see ps_location).
type Location struct {
	Offset      uint64
	Length      uint32
	Compression uint8
}

// Compression choices for Append.
const (
	Auto = int32(C.PS_COMPRESSION_AUTO)
	None = int32(C.PS_COMPRESSION_NONE)
	LZ4  = int32(C.PS_COMPRESSION_LZ4)
	Zstd = int32(C.PS_COMPRESSION_ZSTD)
)

// Store is an open store; safe for concurrent use by many goroutines.
type Store struct{ p *C.ps_store }

// Open opens (creating if needed) the store in dir.
func Open(dir string) (*Store, error) {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	var p *C.ps_store
	if err := statusErr(C.ps_store_open(cdir, nil, &p)); err != nil {
		return nil, err
	}
	return &Store{p: p}, nil
}

// Index backends for OpenWithBackend.
const (
	HashMap  = int32(C.PS_INDEX_HASHMAP)
	DiskHash = int32(C.PS_INDEX_DISKHASH)
)

// OpenWithBackend opens (creating if needed) the store in dir with the given
// index backend: HashMap (in RAM) or DiskHash (on disk, fixed RAM). A store
// made with one backend opens with the other.
func OpenWithBackend(dir string, backend int32) (*Store, error) {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	o := C.ps_options_new()
	if o == nil {
		return nil, &Error{Status: int32(C.PS_ERR_PANIC)} // allocation failed
	}
	defer C.ps_options_free(o)
	if err := statusErr(C.ps_options_set_index_backend(o, C.int32_t(backend))); err != nil {
		return nil, err
	}
	var p *C.ps_store
	if err := statusErr(C.ps_store_open(cdir, o, &p)); err != nil {
		return nil, err
	}
	return &Store{p: p}, nil
}

// Close syncs, saves the index and frees the store.
func (s *Store) Close() error {
	p := s.p
	s.p = nil
	return statusErr(C.ps_store_close(p))
}

// Append stores data for id and returns its location.
func (s *Store) Append(id ID, data []byte, compression int32) (Location, error) {
	var loc C.ps_location
	var ptr *C.uint8_t
	if len(data) > 0 {
		ptr = (*C.uint8_t)(unsafe.Pointer(&data[0]))
	}
	st := C.ps_store_append(s.p, id.c(), ptr, C.size_t(len(data)), C.int32_t(compression), &loc)
	runtime.KeepAlive(data)
	if err := statusErr(st); err != nil {
		return Location{}, err
	}
	return Location{uint64(loc.offset), uint32(loc.length), uint8(loc.compression)}, nil
}

// Get returns the payload of id, or ErrNotFound.
func (s *Store) Get(id ID) ([]byte, error) {
	var b C.ps_buf
	if err := statusErr(C.ps_store_get(s.p, id.c(), &b)); err != nil {
		return nil, err
	}
	defer C.ps_buf_free(&b)
	return C.GoBytes(unsafe.Pointer(b.data), C.int(b.len)), nil
}

// GetMany looks up many ids at once (about twice the throughput of one Get
// per id on large stores). For each id: the payload and nil, nil and
// ErrNotFound, or nil and that lookup's error.
func (s *Store) GetMany(ids []ID) ([][]byte, []error) {
	n := len(ids)
	datas, errs := make([][]byte, n), make([]error, n)
	if n == 0 {
		return datas, errs
	}
	cids := (*[1 << 28]C.ps_edge_id)(C.malloc(C.size_t(n) * C.sizeof_ps_edge_id))[:n:n]
	bufs := (*[1 << 28]C.ps_buf)(C.malloc(C.size_t(n) * C.sizeof_ps_buf))[:n:n]
	sts := (*[1 << 28]C.ps_status)(C.malloc(C.size_t(n) * C.sizeof_ps_status))[:n:n]
	defer C.free(unsafe.Pointer(&cids[0]))
	defer C.free(unsafe.Pointer(&bufs[0]))
	defer C.free(unsafe.Pointer(&sts[0]))
	for i, id := range ids {
		cids[i] = id.c()
	}
	if err := statusErr(C.ps_store_get_many(s.p, &cids[0], C.size_t(n), &bufs[0], &sts[0])); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return datas, errs
	}
	for i := range ids {
		if errs[i] = statusErr(sts[i]); errs[i] == nil {
			datas[i] = C.GoBytes(unsafe.Pointer(bufs[i].data), C.int(bufs[i].len))
		}
		C.ps_buf_free(&bufs[i])
	}
	return datas, errs
}

// GetAt reads a location returned by Append.
func (s *Store) GetAt(loc Location) ([]byte, error) {
	var b C.ps_buf
	cl := C.ps_location{offset: C.uint64_t(loc.Offset), length: C.uint32_t(loc.Length), compression: C.uint8_t(loc.Compression)}
	if err := statusErr(C.ps_store_get_at(s.p, cl, &b)); err != nil {
		return nil, err
	}
	defer C.ps_buf_free(&b)
	return C.GoBytes(unsafe.Pointer(b.data), C.int(b.len)), nil
}

// Contains reports whether id has a payload.
func (s *Store) Contains(id ID) bool { return bool(C.ps_store_contains(s.p, id.c())) }

// Len is the number of live payloads.
func (s *Store) Len() uint64 { return uint64(C.ps_store_len(s.p)) }

// VerifyReport is what Verify found (see ps_verify_report).
type VerifyReport struct {
	Records, Bytes               uint64
	DamagedRegions, DamagedBytes uint64
	FirstDamagedOffset           uint64
	IndexEntries, IndexErrors    uint64
	FirstIndexErrorOffset        uint64
}

// Clean reports that no damage and no bad index entry was found.
func (r VerifyReport) Clean() bool { return r.DamagedRegions == 0 && r.IndexErrors == 0 }

// Verify scrubs the store: every record's checksum, then every index entry.
// Damage is in the report; the error is for a store that cannot be read.
func (s *Store) Verify() (VerifyReport, error) {
	var r C.ps_verify_report
	if err := statusErr(C.ps_store_verify(s.p, &r)); err != nil {
		return VerifyReport{}, err
	}
	return VerifyReport{
		Records: uint64(r.records), Bytes: uint64(r.bytes),
		DamagedRegions: uint64(r.damaged_regions), DamagedBytes: uint64(r.damaged_bytes),
		FirstDamagedOffset: uint64(r.first_damaged_offset),
		IndexEntries:       uint64(r.index_entries), IndexErrors: uint64(r.index_errors),
		FirstIndexErrorOffset: uint64(r.first_index_error_offset),
	}, nil
}

// CompactReport is what Compact did (see ps_compact_report).
type CompactReport struct {
	Payloads, BytesBefore, BytesAfter, Generation, Micros uint64
}

// Compact rewrites the log with only the live payloads, dropping replaced
// and deleted ones, while other goroutines read and append; locations
// returned before it become invalid.
func (s *Store) Compact() (CompactReport, error) {
	var r C.ps_compact_report
	if err := statusErr(C.ps_store_compact(s.p, &r)); err != nil {
		return CompactReport{}, err
	}
	return CompactReport{
		Payloads: uint64(r.payloads), BytesBefore: uint64(r.bytes_before),
		BytesAfter: uint64(r.bytes_after), Generation: uint64(r.generation),
		Micros: uint64(r.micros),
	}, nil
}

// Sync makes every append so far durable.
func (s *Store) Sync() error { return statusErr(C.ps_store_sync(s.p)) }
