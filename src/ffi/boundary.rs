//! All raw-pointer mechanics of the C API, in one place: handle casts, NULL
//! checks, slices from C buffers, library-owned buffers, and the panic
//! boundary. The API functions in `api.rs` contain no `unsafe`.
//!
//! The C caller's contract (stated in the header) is: every non-NULL pointer
//! argument points to a valid object of the stated type and size for the
//! duration of the call; a handle was returned by this library and not yet
//! freed. Within that contract nothing here is undefined behaviour; outside
//! it (a dangling pointer) no library can help, but a handle of the wrong
//! type or a freed one is usually caught by the magic number.

use super::status::*;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// Runs `f`, turning a panic into `fallback`: no unwind crosses into C.
pub(crate) fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Runs a status-returning body: `Err(status)` and panics become the status.
pub(crate) fn run(f: impl FnOnce() -> Result<ps_status, ps_status>) -> ps_status {
    guard(PS_ERR_PANIC, || f().unwrap_or_else(|s| s))
}

/// A C handle type: an empty marker struct that C sees as opaque. The real
/// object behind the pointer is a `Boxed<Inner>`.
pub(crate) trait Handle {
    /// What the handle owns.
    type Inner;
    /// Per-type magic number stored at offset 0 of the allocation.
    const MAGIC: u64;
}

/// The allocation behind every handle: the magic number first (`repr(C)`),
/// so it can be checked before the pointer's type is trusted.
#[repr(C)]
struct Boxed<T> {
    magic: u64,
    value: T,
}

/// Moves `value` to the heap and returns the pointer C will hold.
pub(crate) fn into_handle<H: Handle>(value: H::Inner) -> *mut H {
    Box::into_raw(Box::new(Boxed {
        magic: H::MAGIC,
        value,
    }))
    .cast()
}

fn boxed<H: Handle>(p: *const H) -> Result<*mut Boxed<H::Inner>, ps_status> {
    if p.is_null() {
        return Err(PS_ERR_NULL_ARGUMENT);
    }
    let b = p.cast_mut().cast::<Boxed<H::Inner>>();
    if b.align_offset(align_of::<u64>()) != 0 {
        return Err(PS_ERR_INVALID_HANDLE);
    }
    // SAFETY: by the caller's contract `p` came from `into_handle` of some
    // handle type and is not freed; every such allocation starts with the
    // u64 magic at offset 0 (repr(C)), so this read is in bounds whatever
    // the handle's real type is.
    let magic = unsafe { b.cast::<u64>().read() };
    if magic != H::MAGIC {
        return Err(PS_ERR_INVALID_HANDLE);
    }
    Ok(b)
}

/// Borrows a handle; NULL -> `PS_ERR_NULL_ARGUMENT`, wrong magic -> `PS_ERR_INVALID_HANDLE`.
pub(crate) fn handle<'a, H: Handle>(p: *const H) -> Result<&'a H::Inner, ps_status> {
    let b = boxed(p)?;
    // SAFETY: the magic matches, so this is a live `Boxed<H::Inner>`;
    // shared access is what `const` handles allow.
    Ok(unsafe { &(*b).value })
}

/// Borrows a handle mutably (for builder objects that are not shared).
pub(crate) fn handle_mut<'a, H: Handle>(p: *mut H) -> Result<&'a mut H::Inner, ps_status> {
    let b = boxed(p)?;
    // SAFETY: live (magic checked); `*mut` handles (options, iterators) are
    // documented as not shared between threads, so this borrow is unique.
    Ok(unsafe { &mut (*b).value })
}

/// Takes a handle back from C and frees its allocation. NULL -> `Ok(None)`.
pub(crate) fn take_handle<H: Handle>(p: *mut H) -> Result<Option<H::Inner>, ps_status> {
    if p.is_null() {
        return Ok(None);
    }
    let b = boxed(p)?;
    // SAFETY: a live allocation from `into_handle` (magic checked); C gives
    // up ownership by calling the destructor, so re-boxing it is the one free.
    let mut bx = unsafe { Box::from_raw(b) };
    bx.magic = 0;
    Ok(Some(bx.value))
}

/// The bytes `(data, len)`; `(NULL, 0)` is the empty string.
pub(crate) fn bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], ps_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(PS_ERR_NULL_ARGUMENT);
    }
    if len > isize::MAX as usize {
        return Err(PS_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, len <= isize::MAX, and by contract `data` points to
    // `len` readable bytes that C does not modify during the call.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// The writable bytes `(data, cap)`; `(NULL, 0)` is an empty buffer.
pub(crate) fn bytes_mut<'a>(data: *mut u8, cap: usize) -> Result<&'a mut [u8], ps_status> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if data.is_null() {
        return Err(PS_ERR_NULL_ARGUMENT);
    }
    if cap > isize::MAX as usize {
        return Err(PS_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: as `bytes`, with `cap` writable bytes not aliased during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(data, cap) })
}

/// The C array `(p, count)` of plain values; NULL with `count > 0` is an error.
pub(crate) fn array<'a, T>(p: *const T, count: usize) -> Result<&'a [T], ps_status> {
    if count == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(PS_ERR_NULL_ARGUMENT);
    }
    if count
        .checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
        || p.align_offset(align_of::<T>()) != 0
    {
        return Err(PS_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, aligned, size in range; by contract `p` points to
    // `count` initialized values that C does not modify during the call.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// The writable C array `(p, count)`.
pub(crate) fn array_mut<'a, T>(p: *mut T, count: usize) -> Result<&'a mut [T], ps_status> {
    array(p.cast_const(), count)?;
    // SAFETY: checked as in `array`; by contract writable and unaliased
    // during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, count) })
}

/// A path from a NUL-terminated C string (any bytes but NUL, as on Unix).
pub(crate) fn path(p: *const c_char) -> Result<PathBuf, ps_status> {
    if p.is_null() {
        return Err(PS_ERR_NULL_ARGUMENT);
    }
    // SAFETY: non-NULL and, by contract, NUL-terminated and readable.
    let s = unsafe { CStr::from_ptr(p) };
    if s.to_bytes().is_empty() {
        return Err(PS_ERR_INVALID_ARGUMENT);
    }
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes())))
}

/// Checks that an output pointer is non-NULL before any work is done.
pub(crate) fn out_ptr<T>(p: *mut T) -> Result<*mut T, ps_status> {
    if p.is_null() {
        Err(PS_ERR_NULL_ARGUMENT)
    } else {
        Ok(p)
    }
}

/// Writes an output value (pointer checked by `out_ptr` or NULL = skip).
pub(crate) fn write_out<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: non-NULL; by contract it points to writable memory for a
        // `T`. `write` does not drop the (possibly uninitialized) old value.
        unsafe { p.write(value) };
    }
}

/// A buffer owned by the library: `(data, len)` of a boxed slice.
#[repr(C)]
#[derive(Debug)]
pub struct ps_buf {
    /// The bytes; NULL when `len` is 0.
    pub data: *mut u8,
    /// Number of bytes.
    pub len: usize,
}

/// Hands a vector to C as a `ps_buf` (freed by `ps_buf_free`).
pub(crate) fn buf_from_vec(v: Vec<u8>) -> ps_buf {
    if v.is_empty() {
        return ps_buf {
            data: std::ptr::null_mut(),
            len: 0,
        };
    }
    let b: Box<[u8]> = v.into_boxed_slice();
    let len = b.len();
    ps_buf {
        data: Box::into_raw(b).cast(),
        len,
    }
}

/// Frees a `ps_buf`'s bytes and empties it. NULL and empty are no-ops.
pub(crate) fn buf_free(buf: *mut ps_buf) {
    if buf.is_null() {
        return;
    }
    // SAFETY: non-NULL; by contract a `ps_buf` filled by this library (or
    // zeroed/emptied), not shared during the call.
    let b = unsafe { &mut *buf };
    if !b.data.is_null() && b.len > 0 {
        let slice = std::ptr::slice_from_raw_parts_mut(b.data, b.len);
        // SAFETY: `(data, len)` came from `buf_from_vec`: a leaked `Box<[u8]>`
        // of exactly `len` bytes, freed once because we empty it below.
        drop(unsafe { Box::from_raw(slice) });
    }
    b.data = std::ptr::null_mut();
    b.len = 0;
}

/// A C string -> `&str` for messages passed to C callbacks.
pub(crate) fn c_message(msg: &str) -> std::ffi::CString {
    std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default()
}

/// Calls a C log callback.
pub(crate) fn call_log(
    f: unsafe extern "C" fn(*mut std::ffi::c_void, i32, *const c_char),
    user: *mut std::ffi::c_void,
    level: i32,
    msg: &str,
) {
    let c = c_message(msg);
    // SAFETY: `f` and `user` were registered together by the C caller, who
    // promises `f` may be called from any thread with that pointer; the
    // message is valid for the duration of the call.
    unsafe { f(user, level, c.as_ptr()) }
}
