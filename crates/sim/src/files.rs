//! The bytes of uploaded files, by Attachment id, kept in memory. A stored
//! file is shared, never copied: a download streams the very bytes the
//! upload's body carried. Each file has a random signature, which the links
//! the site hands out carry (see [`crate::uploads`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;

/// One uploaded file.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub filename: String,
    pub content_type: String,
    pub data: Bytes,
    /// Lets a download without a session through; part of the file's links.
    pub signature: String,
}

/// A fresh random signature.
pub fn new_signature() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Uploaded files by Attachment id.
#[derive(Debug, Default)]
pub struct FileStore {
    files: RwLock<HashMap<i64, Arc<StoredFile>>>,
}

impl FileStore {
    /// Keeps `file` as the bytes of Attachment `id`.
    pub fn put(&self, id: i64, file: StoredFile) {
        let mut files = match self.files.write() {
            Ok(files) => files,
            Err(poisoned) => poisoned.into_inner(),
        };
        files.insert(id, Arc::new(file));
    }

    /// The bytes of Attachment `id`, if it has any.
    pub fn get(&self, id: i64) -> Option<Arc<StoredFile>> {
        let files = match self.files.read() {
            Ok(files) => files,
            Err(poisoned) => poisoned.into_inner(),
        };
        files.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_files_by_id() {
        let store = FileStore::default();
        assert!(store.get(1).is_none());
        store.put(
            1,
            StoredFile {
                filename: "a.txt".into(),
                content_type: "text/plain".into(),
                data: Bytes::from_static(b"hi"),
                signature: new_signature(),
            },
        );
        let file = store.get(1).unwrap();
        assert_eq!(&file.data[..], b"hi");
        assert_eq!(file.filename, "a.txt");
        assert_eq!(file.signature.len(), 32);
        assert_ne!(file.signature, new_signature());
    }
}
