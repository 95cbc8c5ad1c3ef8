//! The C ABI: `libpayloadstore.so` / `.a` with `include/payload_store.h`
//! (generated from this module by cbindgen in `build.rs`).
//!
//! Conventions (as in rustls-ffi and sparkey):
//! - `ps_` prefix for functions and types, `PS_` for constants;
//!   `ps_<object>_<verb>(object, inputs…, outputs…)`.
//! - Opaque handles (`ps_store`, `ps_options`, `ps_iter`), each with exactly
//!   one destructor that accepts NULL.
//! - Every fallible function returns a `ps_status` (`PS_OK` = 0); outputs
//!   (`out_*`) are written only on success. `PS_NOT_FOUND` is an outcome.
//! - Integers in, validated: an unknown enum value is an error, never UB.
//! - Buffers the library allocates (`ps_buf`) are freed with `ps_buf_free`.
//! - No panic crosses the boundary (`PS_ERR_PANIC`); no thread-local error
//!   state (a goroutine may move between OS threads between two cgo calls).
//!
//! All raw-pointer handling lives in `boundary`; `api` is plain logic.
#![allow(non_camel_case_types)]

mod api;
mod boundary;
pub mod status;

pub use api::*;
pub use boundary::ps_buf;
pub use status::*;

#[cfg(test)]
mod tests {
    /// The committed header is exactly what build.rs generates now.
    #[test]
    fn header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/payload_store.h"));
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/include/payload_store.h"
        ))
        .unwrap();
        assert!(
            generated == committed,
            "include/payload_store.h is stale: regenerate it with `PS_UPDATE_HEADER=1 cargo build`"
        );
    }

    /// Every status has its own text, and unknown values have one too.
    #[test]
    fn every_status_has_a_distinct_text() {
        let mut seen = std::collections::HashSet::new();
        for s in super::status::all() {
            // SAFETY: ps_status_str returns a static NUL-terminated string.
            let t = unsafe { std::ffi::CStr::from_ptr(super::ps_status_str(s)) }
                .to_str()
                .unwrap()
                .to_string();
            assert!(seen.insert(t), "duplicate text for {s}");
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(super::ps_status_str(12345)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
    }

    /// A panic inside an API body becomes PS_ERR_PANIC (or the fallback value).
    #[test]
    fn a_panic_never_crosses_the_boundary() {
        let status = super::boundary::run(|| panic!("injected"));
        assert_eq!(status, super::PS_ERR_PANIC);
        let v = super::boundary::guard(7u64, || panic!("injected"));
        assert_eq!(v, 7);
    }
}
