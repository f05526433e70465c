//! Shared by every fuzz target: an allocator that refuses any single allocation over
//! [`MAX_ALLOC`] bytes.
//!
//! libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator hooks, which the stable
//! toolchain does not have; this does the same job. A refused allocation makes Rust abort
//! with `memory allocation of N bytes failed`, which libFuzzer reports as a crash and saves
//! as an artifact. So a 20-byte input whose header claims 4 GiB is a crasher unless the
//! parser refuses it before allocating: untouched (overcommitted) memory never shows up in
//! the RSS limit, but it does here.
#![allow(unsafe_code)] // GlobalAlloc is an unsafe trait; every call forwards to System.

use std::alloc::{GlobalAlloc, Layout, System};

/// Largest single allocation a target may make: far above what any bounded parser needs
/// for the inputs libFuzzer generates (4 KiB by default), far below a hostile claim.
pub const MAX_ALLOC: usize = 64 << 20;

/// `#[global_allocator] static ALLOC: sluice_fuzz::LimitedAlloc = sluice_fuzz::LimitedAlloc;`
pub struct LimitedAlloc;

// SAFETY: forwards to `System` unchanged, except that over-limit requests return null,
// which `GlobalAlloc` allows (it signals allocation failure).
unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
