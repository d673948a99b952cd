//! The sending side's files: what the person named (files and folders), walked into a list of
//! relative names with sizes and hashes. Symbolic links are not followed: a folder sent must
//! not drag in what it merely points to.

use std::io::Read;
use std::path::{Path, PathBuf};

use extrasafe_core::transfer::hash::{chunk_hash, root, Hash, CHUNK};
use extrasafe_core::transfer::send::PreparedFile;
use extrasafe_core::transfer::wire::MAX_FILES;

/// A file to send and where it is on disk.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// On disk.
    pub source: PathBuf,
    /// Offered name, size and hashes.
    pub prepared: PreparedFile,
}

/// What [`super::prepare`] found to offer.
#[derive(Debug)]
pub struct Prepared {
    /// The files, hashed.
    pub files: Vec<LocalFile>,
    /// Left out: links and special files, and hidden entries inside folders.
    pub skipped: Vec<PathBuf>,
    /// Paths given that do not exist: left out, the rest is offered (a mistyped name among
    /// several does not stop the others). With nothing else to send, preparing fails with
    /// the first of them.
    pub missing: Vec<PathBuf>,
}

/// Why the files could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Nothing to send (empty folders only, or only links).
    #[error("there is no file to send")]
    Nothing,
    /// Over the per-transfer limit.
    #[error("more than {MAX_FILES} files")]
    TooMany,
    /// A name that is not UTF-8 cannot be offered.
    #[error("{0}: the name is not valid text")]
    BadName(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Walks `paths` (files or folders) into the files to offer, named relative to each given
/// path's parent (`~/photos` is offered as `photos/...`). `skipped` gets what is left out:
/// links and special files, and hidden entries inside folders (a name starting with a dot,
/// such as `.git` or `.DS_Store`), which a receiver refuses by default; `missing` the paths
/// given that do not exist
/// (`core::transfer::names`). A hidden file or folder named explicitly is offered: the
/// receiver decides (`--allow-hidden-files`).
pub fn collect(
    paths: &[PathBuf],
    skipped: &mut Vec<PathBuf>,
    missing: &mut Vec<PathBuf>,
) -> Result<Vec<(PathBuf, String)>, PrepareError> {
    let mut out = Vec::new();
    let mut first_missing = None;
    for p in paths {
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(p.clone());
                first_missing.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(io(p)(e)),
        };
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| PrepareError::BadName(p.clone()))?
            .to_string();
        if meta.is_dir() {
            walk(p, &name, &mut out, skipped)?;
        } else if meta.is_file() {
            out.push((p.clone(), name));
        } else {
            skipped.push(p.clone());
        }
        if out.len() > MAX_FILES {
            return Err(PrepareError::TooMany);
        }
    }
    if out.is_empty() {
        return Err(match (missing.first(), first_missing) {
            (Some(path), Some(source)) => PrepareError::Io {
                path: path.clone(),
                source,
            },
            _ => PrepareError::Nothing,
        });
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    rel: &str,
    out: &mut Vec<(PathBuf, String)>,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), PrepareError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    // A stable order: the receiver sees the same offer for the same folder (and can resume).
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e
            .file_name()
            .to_str()
            .ok_or_else(|| PrepareError::BadName(path.clone()))?
            .to_string();
        let child = format!("{rel}/{name}");
        let ty = e.file_type().map_err(io(&path))?;
        if name.starts_with('.') {
            skipped.push(path);
        } else if ty.is_dir() {
            walk(&path, &child, out, skipped)?;
        } else if ty.is_file() {
            out.push((path, child));
            if out.len() > MAX_FILES {
                return Err(PrepareError::TooMany);
            }
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

/// Chunks read and hashed at a time (hashed in parallel, one thread per core).
const BATCH_CHUNKS: usize = 32;

/// Hashes one file (blocking I/O: run it off the async threads). Chunks are independent, so
/// a batch of them is hashed on all cores at once.
pub fn hash_file(source: &Path, name: String) -> Result<LocalFile, PrepareError> {
    let mut f = std::fs::File::open(source).map_err(io(source))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut buf = vec![0u8; BATCH_CHUNKS * CHUNK];
    let mut chunks: Vec<Hash> = Vec::new();
    let mut size = 0u64;
    loop {
        // Fill the batch (a read may return less than asked).
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(&mut buf[filled..]).map_err(io(source))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        size += filled as u64;
        let first = chunks.len() as u64;
        let pieces: Vec<&[u8]> = buf[..filled].chunks(CHUNK).collect();
        let mut hashes = vec![[0u8; 32]; pieces.len()];
        let per = pieces.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (t, (out, ins)) in hashes.chunks_mut(per).zip(pieces.chunks(per)).enumerate() {
                s.spawn(move || {
                    for (k, (o, p)) in out.iter_mut().zip(ins).enumerate() {
                        *o = chunk_hash(first + (t * per + k) as u64, p);
                    }
                });
            }
        });
        chunks.extend(hashes);
        if filled < buf.len() {
            break;
        }
    }
    Ok(LocalFile {
        source: source.to_path_buf(),
        prepared: PreparedFile {
            path: name,
            size,
            root: root(size, &chunks),
            chunks,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_in_order_and_links_left_out() {
        let d = std::env::temp_dir().join(format!("es-prep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("photos/2026")).unwrap();
        std::fs::write(d.join("photos/b.jpg"), b"b").unwrap();
        std::fs::write(d.join("photos/2026/a.jpg"), b"a").unwrap();
        std::fs::write(d.join("notes.txt"), b"n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("photos/passwd")).unwrap();
        // Hidden entries are left out (a receiver would refuse the whole offer).
        std::fs::create_dir_all(d.join("photos/.git")).unwrap();
        std::fs::write(d.join("photos/.git/config"), b"c").unwrap();
        std::fs::write(d.join(".profile"), b"p").unwrap();
        let (mut skipped, mut missing) = (Vec::new(), Vec::new());
        let files = collect(
            &[d.join("photos"), d.join("notes.txt"), d.join(".profile")],
            &mut skipped,
            &mut missing,
        )
        .unwrap();
        assert!(missing.is_empty());
        let names: Vec<&str> = files.iter().map(|f| f.1.as_str()).collect();
        // A hidden file named explicitly is offered; the receiver decides.
        assert_eq!(
            names,
            ["photos/2026/a.jpg", "photos/b.jpg", "notes.txt", ".profile"]
        );
        assert_eq!(
            skipped,
            vec![d.join("photos/.git"), d.join("photos/passwd")]
        );
        let f = hash_file(&files[0].0, files[0].1.clone()).unwrap();
        assert_eq!(f.prepared.size, 1);
        // Hashed in parallel batches, the result is the streaming hasher's.
        let data: Vec<u8> = (0..(40 * 256 * 1024 + 77))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(d.join("big"), &data).unwrap();
        let f = hash_file(&d.join("big"), "big".into()).unwrap();
        let mut h = extrasafe_core::transfer::hash::FileHasher::new();
        h.update(&data);
        let (size, root, chunks) = h.finish();
        assert_eq!(
            (f.prepared.size, f.prepared.root, f.prepared.chunks),
            (size, root, chunks)
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
