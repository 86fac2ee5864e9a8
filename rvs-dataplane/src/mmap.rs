//! BPF arrays created with BPF_F_MMAPABLE, mapped into our memory: bulk reads and writes
//! become plain loads and stores instead of one syscall per element.

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::MapData;

/// A mapped BPF array of `T`. The kernel lays array elements out every
/// `round_up(size_of::<T>(), 8)` bytes.
pub struct MmapArray<T: Copy> {
    ptr: NonNull<u8>,
    len: usize,
    /// Keeps the map fd open while mapped.
    _map: MapData,
    _t: PhantomData<T>,
}

impl<T: Copy> MmapArray<T> {
    /// Bytes between two elements.
    const STRIDE: usize = size_of::<T>().div_ceil(8) * 8;

    /// Maps the `len` elements of `map` (which must be an mmapable array of `T`).
    pub fn new(map: MapData, len: u32) -> std::io::Result<Self> {
        let bytes = (len as usize) * Self::STRIDE;
        // SAFETY: mapping a BPF array created with BPF_F_MMAPABLE, length from its definition.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned NULL"))?;
        Ok(Self {
            ptr,
            len: len as usize,
            _map: map,
            _t: PhantomData,
        })
    }

    fn slot(&self, i: usize) -> *mut T {
        // SAFETY: callers check i < len; the offset stays inside the mapping.
        unsafe { self.ptr.as_ptr().add(i * Self::STRIDE).cast::<T>() }
    }

    /// Element `i`, or None past the end.
    pub fn get(&self, i: u32) -> Option<T> {
        let i = i as usize;
        // SAFETY: i < len; elements are 8-byte aligned and hold plain data.
        (i < self.len).then(|| unsafe { self.slot(i).read_volatile() })
    }

    /// Writes element `i`; ignored past the end (the planner never goes there).
    pub fn set(&mut self, i: u32, value: T) {
        let i = i as usize;
        if i < self.len {
            // SAFETY: i < len, inside the mapping.
            unsafe { self.slot(i).write_volatile(value) };
        }
    }

    /// A pointer to element `i` (for atomic access to memory the XDP program updates with
    /// atomic instructions), or None past the end.
    pub fn ptr(&self, i: u32) -> Option<*mut T> {
        ((i as usize) < self.len).then(|| self.slot(i as usize))
    }

    /// Writes `values` from element `off` on.
    pub fn write(&mut self, off: u32, values: &[T]) {
        for (i, v) in (off..).zip(values) {
            self.set(i, *v);
        }
    }
}

impl<T: Copy> Drop for MmapArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len * Self::STRIDE) };
    }
}

// SAFETY: the mapping is owned by this struct and only written through &mut self.
unsafe impl<T: Copy + Send> Send for MmapArray<T> {}
