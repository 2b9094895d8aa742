//! Blobs in an S3-compatible bucket on a real server (`scripts/s3`: s3s-fs from
//! crates.io on loopback): a registration is uploaded in parts and loaded verified, a
//! range is read, and an object changed in the bucket is refused as an integrity
//! failure, as a changed local file is.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "common/s3.rs"]
mod s3;

use common::{Fixture, write_model};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use warden_registry::blobs::{BlobStore, PART};
use warden_registry::download::DownloadBody;
use warden_registry::s3::{S3Options, store};
use warden_registry::{Caller, RegistryError, Selector, Staging};

fn s3_blobs(endpoint: &str, bucket: &str) -> BlobStore {
    let opts = S3Options {
        endpoint: Some(endpoint.to_owned()),
        region: None,
        access_key: Some(s3::ACCESS_KEY.into()),
        secret_key: Some(s3::SECRET_KEY.into()),
        session_token: None,
    };
    BlobStore::with_store(store(&format!("s3://{bucket}/blobs"), &opts).unwrap())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn blobs_in_an_s3_bucket_upload_in_parts_and_load_verified() {
    let (endpoint, name, root) = s3::bucket("t");
    let fx = Fixture::with_stores(None, Some(s3_blobs(&endpoint, &name)));
    fx.add("eng", &["ml-engineer"], false, Some("admin"));
    let file = fx.dir.path().join("big.safetensors");
    // More than two parts: the upload is a real multipart upload.
    write_model(&file, 2 * PART + PART / 2, 3);
    let original = std::fs::read(&file).unwrap();
    assert!(original.len() > 2 * PART, "{}", original.len());
    fx.register_file("eng", "1", &file);
    // The object is in the bucket under the blob key, the staging upload gone.
    let objects: Vec<PathBuf> = files_under(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/blobs/sha256/"))
        .collect();
    assert!(!objects.is_empty(), "no blob in {}", root.display());
    assert!(
        !files_under(&root)
            .iter()
            .any(|p| p.to_string_lossy().contains("/staging/")),
        "a staging object was left behind"
    );
    let eng = Caller::local("eng");
    let v1 = Selector::Version("1".into());
    let loaded = fx
        .rt
        .block_on(fx.m().load(&eng, "m", &v1, None, &Staging::Memory))
        .unwrap();
    assert_eq!(loaded.into_single_bytes().unwrap().to_vec(), original);
    // A range of the object, read from the bucket and checked on the way.
    let d = fx
        .rt
        .block_on(
            fx.m()
                .download(&eng, "m", &v1, "big.safetensors", Some("bytes=1000-1999")),
        )
        .unwrap();
    assert_eq!(d.len(), 1000);
    let body = fx.rt.block_on(async {
        match d.into_body() {
            DownloadBody::Complete(b) => b.to_vec(),
            DownloadBody::Stream(mut s) => {
                let mut v = Vec::new();
                while let Some(c) = s.next().await {
                    v.extend_from_slice(&c.unwrap());
                }
                v
            }
        }
    });
    assert_eq!(body, original[1000..2000]);
    // Someone with write access to the bucket changes the object: refused.
    let blob = objects
        .iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == original.len() as u64))
        .expect("the blob's object file");
    let mut changed = std::fs::read(blob).unwrap();
    changed[100] ^= 0x40;
    std::fs::write(blob, &changed).unwrap();
    let r = fx
        .rt
        .block_on(fx.m().load(&eng, "m", &v1, None, &Staging::Memory));
    assert!(matches!(r, Err(RegistryError::Integrity { .. })), "{r:?}");
    let _ = std::fs::remove_dir_all(&root);
}
