pub mod auditor;
pub mod bench;
pub mod bench_registry;
pub mod init;
pub mod log;
pub mod model;
pub mod principal;
pub mod verify;
