//! Verified model bytes as a Python object that shares them: it exports the buffer
//! protocol (read-only), so `memoryview`, `numpy.frombuffer`, `hashlib` and
//! `pickle.loads` read the load's own memory with no copy.

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::os::raw::{c_int, c_void};
use warden_registry::blobs::MemoryBlob;

/// The bytes of one verified, audited load (read-only).
#[pyclass(frozen, module = "warden._native")]
#[derive(Debug)]
pub struct Blob {
    data: MemoryBlob,
}

impl Blob {
    pub fn new(data: MemoryBlob) -> Self {
        Self { data }
    }
}

#[pymethods]
impl Blob {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// Exports the bytes read-only. `PyBuffer_FillInfo` takes a new reference to this
    /// object in the view, so the memory outlives every view of it; the memory never
    /// moves or changes after the load (an anonymous mapping made read-only, or a vector
    /// owned by this frozen object).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("verified model bytes are read-only"));
        }
        let bytes: &[u8] = &slf.get().data;
        let len = isize::try_from(bytes.len())
            .map_err(|_| PyBufferError::new_err("the buffer is too large"))?;
        // SAFETY: `view` is the exporter's view to fill, given by the interpreter;
        // the pointer and length describe memory owned by `slf`, which the view keeps
        // alive (FillInfo increments its reference count); readonly = 1 matches the
        // memory, which nothing writes after the load.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut c_void,
                len,
                1,
                flags,
            )
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to release: the memory lives as long as this object.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
