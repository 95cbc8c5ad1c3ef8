package payloadstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

func payload(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("payload %d ", i)), 1+i%300)
}

func TestRoundTripAndStatusMapping(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	locs := map[int]Location{}
	for i := 0; i < 2000; i++ {
		loc, err := s.Append(ID{1, uint64(i)}, payload(i), Auto)
		if err != nil {
			t.Fatal(err)
		}
		locs[i] = loc
	}
	if _, err := s.Append(ID{1, 1}, []byte("x"), 7); !errors.Is(err, &Error{Status: StatusInvalidCompression}) {
		t.Fatalf("bad compression: %v", err)
	}
	if _, err := Open(dir); !errors.Is(err, &Error{Status: StatusLocked}) {
		t.Fatalf("second open: %v", err)
	}
	if _, err := s.Get(ID{2, 2}); err != ErrNotFound {
		t.Fatalf("missing id: %v", err)
	}
	if _, err := s.GetAt(Location{Offset: 5, Length: 10}); !errors.Is(err, &Error{Status: StatusInvalidLocation}) {
		t.Fatalf("bad location: %v", err)
	}
	// concurrent readers from many goroutines
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < 2000; i += 8 {
				got, err := s.Get(ID{1, uint64(i)})
				if err != nil || !bytes.Equal(got, payload(i)) {
					t.Errorf("get %d: %v", i, err)
				}
				at, err := s.GetAt(locs[i])
				if err != nil || !bytes.Equal(at, payload(i)) {
					t.Errorf("get_at %d: %v", i, err)
				}
			}
		}(g)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 2000 || !s.Contains(ID{1, 1999}) {
		t.Fatalf("after reopen: len %d", s.Len())
	}
	got, err := s.Get(ID{1, 1234})
	if err != nil || !bytes.Equal(got, payload(1234)) {
		t.Fatalf("after reopen: %v", err)
	}
	ids := []ID{{1, 7}, {9, 9}, {1, 1999}, {1, 7}}
	datas, errs := s.GetMany(ids)
	for i, id := range ids {
		if id.Hi == 9 {
			if errs[i] != ErrNotFound || datas[i] != nil {
				t.Fatalf("get_many absent: %v", errs[i])
			}
		} else if errs[i] != nil || !bytes.Equal(datas[i], payload(int(id.Lo))) {
			t.Fatalf("get_many %v: %v", id, errs[i])
		}
	}
	if d, e := s.GetMany(nil); len(d) != 0 || len(e) != 0 {
		t.Fatalf("get_many of nothing")
	}
	if r, err := s.Verify(); err != nil || !r.Clean() || r.IndexEntries != 2000 {
		t.Fatalf("verify of a sound store: %+v %v", r, err)
	}
}

func TestVerifyFindsAFlippedByte(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var victim Location
	for i := 0; i < 100; i++ {
		loc, err := s.Append(ID{3, uint64(i)}, payload(i), Auto)
		if err != nil {
			t.Fatal(err)
		}
		if i == 50 {
			victim = loc
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := dir + "/payload.data"
	log, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log[victim.Offset+40] ^= 0x10
	if err := os.WriteFile(path, log, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if r.Clean() || r.DamagedRegions != 1 || r.FirstDamagedOffset != victim.Offset ||
		r.IndexErrors != 1 || r.FirstIndexErrorOffset != victim.Offset || r.IndexEntries != 100 {
		t.Fatalf("verify after a flipped byte: %+v", r)
	}
	// a damaged live payload stops compaction, which changes nothing
	if _, err := s.Compact(); !errors.Is(err, &Error{Status: StatusCorrupt}) {
		t.Fatalf("compact of a damaged live payload: %v", err)
	}
	if got, err := s.Get(ID{3, 7}); err != nil || !bytes.Equal(got, payload(7)) {
		t.Fatalf("get after a refused compaction: %v", err)
	}
	if _, err := s.Get(ID{3, 50}); !errors.Is(err, &Error{Status: StatusChecksumMismatch}) {
		t.Fatalf("damaged payload: %v", err)
	}
	if got, err := s.Get(ID{3, 51}); err != nil || !bytes.Equal(got, payload(51)) {
		t.Fatalf("neighbour: %v", err)
	}
}

func TestCompactDropsReplacedPayloads(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for v := 0; v < 3; v++ {
		for i := 0; i < 100; i++ {
			if _, err := s.Append(ID{4, uint64(i)}, payload(i+1000*v), Auto); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := s.Compact()
	if err != nil || r.Payloads != 100 || r.Generation != 1 || r.BytesAfter >= r.BytesBefore*2/3 {
		t.Fatalf("compact: %+v %v", r, err)
	}
	for i := 0; i < 100; i++ {
		if got, err := s.Get(ID{4, uint64(i)}); err != nil || !bytes.Equal(got, payload(i+2000)) {
			t.Fatalf("get %d after compact: %v", i, err)
		}
	}
}

func TestDiskHashBackendAndConversion(t *testing.T) {
	dir := t.TempDir()
	for round, backend := range []int32{DiskHash, HashMap, DiskHash} {
		s, err := OpenWithBackend(dir, backend)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			for i := 0; i < 5000; i++ {
				if _, err := s.Append(ID{7, uint64(i)}, payload(i), Auto); err != nil {
					t.Fatal(err)
				}
			}
		}
		if s.Len() != 5000 {
			t.Fatalf("round %d: %d payloads", round, s.Len())
		}
		for i := 0; i < 5000; i += 7 {
			got, err := s.Get(ID{7, uint64(i)})
			if err != nil || !bytes.Equal(got, payload(i)) {
				t.Fatalf("round %d: id %d: %v", round, i, err)
			}
		}
		if _, err := s.Get(ID{8, 0}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("round %d: absent id: %v", round, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenWithBackend(dir, 9); !errors.Is(err, &Error{Status: StatusInvalidArgument}) {
		t.Fatalf("unknown backend: %v", err)
	}
}
