//! The receiving side's files: verified data goes to a partial file in the download folder,
//! which becomes the real file only once complete and durable (synced, then linked under a
//! name nobody has, so nothing is ever overwritten). Completed files are committed in
//! batches, one file-system sync per batch, so ten thousand small files do not cost ten
//! thousand syncs. The partial file is named by the content's hash, so the same content
//! offered again later resumes from it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use extrasafe_core::transfer::hash::{chunk_hash, Hash, CHUNK};
use extrasafe_core::transfer::names::numbered;
use extrasafe_core::transfer::offer::{ValidFile, ValidOffer};
use extrasafe_core::transfer::receive::FileSink;

/// Prefix of partial files (hidden, and plainly ours).
const PARTIAL_PREFIX: &str = ".extrasafe-partial-";

/// The partial file for content with this root hash.
pub(crate) fn partial_path(dir: &Path, root: &Hash) -> PathBuf {
    let hex: String = root[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{PARTIAL_PREFIX}{hex}"))
}

/// Bytes of each offered file already on disk from an earlier attempt.
pub(crate) fn resumable(dir: &Path, offer: &ValidOffer) -> Vec<u64> {
    offer
        .files
        .iter()
        .map(|f| {
            std::fs::symlink_metadata(partial_path(dir, &f.root))
                .ok()
                .filter(reusable)
                .map(|m| m.len().min(f.size))
                .unwrap_or(0)
        })
        .collect()
}

/// Whether a partial file found on disk may be written on: a plain file with no other name.
/// A second link means it is also a saved file (a crash between naming and removing), and
/// writing would change that file.
fn reusable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.is_file() && m.nlink() == 1
}

/// Free bytes for us in `dir`'s file system.
pub(crate) fn free_space(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

struct Open {
    /// `None` when identical content is already complete in this batch: nothing to write.
    file: Option<File>,
    partial: PathBuf,
    /// Where the file ends now, and up to where the disk was already asked to write it.
    end: u64,
    flushed: u64,
}

/// Written data is handed to the disk every this many bytes, so the sync at the end of a big
/// file waits for little and the page cache never fills with our dirty pages.
const WRITEBACK_STEP: u64 = 16 << 20;

/// Files complete but not yet committed: at most this many, or this many bytes.
const BATCH_FILES: usize = 1000;
const BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// Writes verified data to disk.
pub(crate) struct DiskSink {
    dir: PathBuf,
    open: Option<Open>,
    /// Complete, verified, not yet synced and named: (partial, file).
    ready: Vec<(PathBuf, ValidFile)>,
    ready_bytes: u64,
    /// Files complete so far (committed or not).
    pub(crate) completed: usize,
    /// Where each committed file ended up.
    pub(crate) saved: Vec<PathBuf>,
    /// File bytes verified and handed over so far (protocol bytes such as chunk-hash lists
    /// are not counted: progress is about the person's files).
    pub(crate) verified: u64,
}

impl DiskSink {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: None,
            ready: Vec::new(),
            ready_bytes: 0,
            completed: 0,
            saved: Vec::new(),
            verified: 0,
        }
    }

    /// Whether enough is waiting that it should be committed now.
    pub(crate) fn should_commit(&self) -> bool {
        self.ready.len() >= BATCH_FILES || self.ready_bytes >= BATCH_BYTES
    }

    /// File `file` (the one open) is complete and verified: it joins the next commit (which
    /// the caller runs, off the async runtime, when [`Self::should_commit`] says so).
    pub(crate) fn complete(&mut self, file: &ValidFile) -> Result<(), String> {
        let o = self.open.take().ok_or("no file open")?;
        drop(o.file);
        self.ready_bytes += file.size;
        self.completed += 1;
        self.ready.push((o.partial, file.clone()));
        Ok(())
    }

    /// Makes every completed file durable and gives it its name, never replacing anything
    /// (`name (1).ext` if the name is taken).
    pub(crate) fn commit(&mut self) -> Result<(), String> {
        let (saved, result) = self.take_batch().commit();
        self.saved.extend(saved);
        result
    }

    /// The completed files not yet committed, to commit elsewhere (see [`Batch::commit`]).
    pub(crate) fn take_batch(&mut self) -> Batch {
        self.ready_bytes = 0;
        Batch {
            dir: self.dir.clone(),
            ready: std::mem::take(&mut self.ready),
            // The file being received may be a second copy of content in this batch, to be
            // linked from the same partial file later: that one must stay.
            keep: self
                .open
                .as_ref()
                .filter(|o| o.file.is_none())
                .map(|o| o.partial.clone()),
        }
    }

    /// The transfer stopped: commits what is complete, and leaves behind at most the partial
    /// file being written, for a later resume (`discard`: not even that). A second copy of
    /// complete content never leaves its partial file behind: that one is linked to a saved
    /// file by then, and resuming into it would change the saved file.
    pub(crate) fn stop(&mut self, discard: bool) -> Result<(), String> {
        let twin = match self.open.as_ref() {
            Some(o) if o.file.is_none() => Some(o.partial.clone()),
            Some(o) if discard => {
                let _ = std::fs::remove_file(&o.partial);
                None
            }
            _ => None,
        };
        let result = self.commit();
        self.open = None;
        if let Some(p) = twin {
            let _ = std::fs::remove_file(p);
        }
        result
    }
}

/// Completed files on their way to their names.
pub(crate) struct Batch {
    dir: PathBuf,
    /// Complete, verified, not yet synced and named: (partial, file).
    ready: Vec<(PathBuf, ValidFile)>,
    /// A partial file still needed after this batch.
    keep: Option<PathBuf>,
}

impl Batch {
    /// Makes every completed file durable and gives it its name, never replacing anything
    /// (`name (1).ext` if the name is taken).
    /// Returns where each file went, also when a later one failed.
    pub(crate) fn commit(self) -> (Vec<PathBuf>, Result<(), String>) {
        let mut saved = Vec::with_capacity(self.ready.len());
        let result = self.commit_into(&mut saved);
        (saved, result)
    }

    fn commit_into(&self, saved: &mut Vec<PathBuf>) -> Result<(), String> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let dir = File::open(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        rustix::fs::syncfs(&dir).map_err(|e| format!("syncing {}: {e}", self.dir.display()))?;
        let ready = &self.ready;
        for (i, (partial, file)) in ready.iter().enumerate() {
            let path = self.link(partial, file)?;
            saved.push(path);
            // The same content twice in one offer shares one partial file.
            if !ready[i + 1..].iter().any(|(p, _)| p == partial)
                && self.keep.as_ref() != Some(partial)
            {
                let _ = std::fs::remove_file(partial);
            }
        }
        // The new names, durable too.
        rustix::fs::syncfs(&dir).map_err(|e| format!("syncing {}: {e}", self.dir.display()))
    }

    fn link(&self, partial: &Path, file: &ValidFile) -> Result<PathBuf, String> {
        let parent = self.make_parents(file)?;
        let name = file.path.file_name();
        for n in 0..10_000u32 {
            let candidate = if n == 0 {
                parent.join(name)
            } else {
                parent.join(numbered(name, n))
            };
            // A hard link fails if the name exists: no window in which another file could
            // be replaced.
            match std::fs::hard_link(partial, &candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}: {e}", candidate.display())),
            }
        }
        Err(format!("no free name for {}", file.path))
    }

    /// Creates the folders of `rel` under the download folder, refusing to pass through
    /// anything that is not a real folder (a symlink planted there must not lead out).
    fn make_parents(&self, file: &ValidFile) -> Result<PathBuf, String> {
        let mut at = self.dir.clone();
        let comps: Vec<&str> = file.path.components().collect();
        for c in &comps[..comps.len() - 1] {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(format!(
                        "{} exists and is not a folder",
                        at.strip_prefix(&self.dir).unwrap_or(&at).display()
                    ))
                }
                Err(_) => std::fs::create_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?,
            }
        }
        Ok(at)
    }
}

/// Reads back the first `len` bytes of a partial file and checks them chunk by chunk; returns
/// how much of it verified.
fn verified_prefix(file: &mut File, len: u64, chunks: &[Hash]) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut good = 0u64;
    for (i, want) in chunks.iter().enumerate() {
        // Resumes are whole chunks, so every chunk checked here is a full one.
        let n = CHUNK;
        if good + n as u64 > len {
            break;
        }
        file.read_exact(&mut buf[..n])?;
        if chunk_hash(i as u64, &buf[..n]) != *want {
            break;
        }
        good += n as u64;
    }
    Ok(good)
}

impl FileSink for DiskSink {
    fn begin(
        &mut self,
        _index: usize,
        file: &ValidFile,
        resumed: u64,
        chunks: &[Hash],
    ) -> Result<(), String> {
        let partial = partial_path(&self.dir, &file.root);
        if self.ready.iter().any(|(p, _)| *p == partial) {
            // Identical content already complete in this batch: that partial is kept as it
            // is (it will be linked twice) and this copy is not written at all.
            self.open = Some(Open {
                file: None,
                partial,
                end: 0,
                flushed: 0,
            });
            return Ok(());
        }
        match std::fs::symlink_metadata(&partial) {
            Ok(m) if !m.is_file() => return Err(format!("{} is in the way", partial.display())),
            // Also a saved file's name (see `reusable`): start afresh under a new inode
            // instead of writing into that file.
            Ok(m) if !reusable(&m) => {
                if resumed > 0 {
                    return Err("the partial data from an earlier attempt cannot be reused".into());
                }
                std::fs::remove_file(&partial).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(resumed == 0)
            .open(&partial)
            .map_err(|e| e.to_string())?;
        if resumed > 0 {
            // Only whole chunks that still match their hashes are kept.
            let good = verified_prefix(&mut f, resumed, chunks).map_err(|e| e.to_string())?;
            if good != resumed {
                return Err(format!(
                    "the partial data of {} from an earlier attempt no longer verifies; remove {} and try again",
                    file.path,
                    partial.display()
                ));
            }
        }
        f.set_len(resumed).map_err(|e| e.to_string())?;
        f.seek(SeekFrom::Start(resumed))
            .map_err(|e| e.to_string())?;
        self.open = Some(Open {
            file: Some(f),
            partial,
            end: resumed,
            flushed: resumed,
        });
        Ok(())
    }

    fn write(&mut self, _index: usize, data: &[u8]) -> Result<(), String> {
        let open = self.open.as_mut().ok_or("no file open")?;
        self.verified += data.len() as u64;
        let Some(f) = open.file.as_mut() else {
            return Ok(());
        };
        f.write_all(data).map_err(|e| e.to_string())?;
        open.end += data.len() as u64;
        if open.end - open.flushed >= WRITEBACK_STEP {
            // Starts writing that range out without waiting for it (Linux writes dirty pages
            // back before it may drop them); only a hint, so a refusal changes nothing.
            let len = std::num::NonZeroU64::new(open.end - open.flushed);
            let _ = rustix::fs::fadvise(&*f, open.flushed, len, rustix::fs::Advice::DontNeed);
            open.flushed = open.end;
        }
        Ok(())
    }

    fn end(&mut self, _index: usize) -> Result<(), String> {
        // `end` needs the file's name: wrap the sink in a `NamedSink`.
        Err("DiskSink::end without a name".into())
    }
}

/// Wraps a [`DiskSink`] so `end` knows each file's name.
pub(crate) struct NamedSink<'a> {
    pub(crate) disk: &'a mut DiskSink,
    pub(crate) offer: &'a ValidOffer,
}

impl FileSink for NamedSink<'_> {
    fn begin(
        &mut self,
        i: usize,
        f: &ValidFile,
        resumed: u64,
        chunks: &[Hash],
    ) -> Result<(), String> {
        self.disk.begin(i, f, resumed, chunks)
    }
    fn write(&mut self, i: usize, data: &[u8]) -> Result<(), String> {
        self.disk.write(i, data)
    }
    fn end(&mut self, i: usize) -> Result<(), String> {
        self.disk.complete(&self.offer.files[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extrasafe_core::transfer::hash::FileHasher;
    use extrasafe_core::transfer::wire::OfferedFile;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("es-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn offer_of(files: &[(&str, &[u8])]) -> (ValidOffer, Vec<Vec<Hash>>) {
        let mut wire = Vec::new();
        let mut hashes = Vec::new();
        for (p, d) in files {
            let mut h = FileHasher::new();
            h.update(d);
            let (size, root, chunks) = h.finish();
            wire.push(OfferedFile {
                path: p.to_string(),
                size,
                root,
            });
            hashes.push(chunks);
        }
        (ValidOffer::check(wire).unwrap(), hashes)
    }

    fn save(dir: &Path, offer: &ValidOffer, hashes: &[Vec<Hash>], data: &[&[u8]]) -> Vec<PathBuf> {
        let mut disk = DiskSink::new(dir.to_path_buf());
        let mut sink = NamedSink {
            disk: &mut disk,
            offer,
        };
        for (i, f) in offer.files.iter().enumerate() {
            sink.begin(i, f, 0, &hashes[i]).unwrap();
            sink.write(i, data[i]).unwrap();
            sink.end(i).unwrap();
        }
        disk.commit().unwrap();
        disk.saved
    }

    #[test]
    fn files_appear_only_when_complete_and_never_replace_anything() {
        let dir = tmp("names");
        std::fs::write(dir.join("report.pdf"), b"mine").unwrap();
        let (offer, hashes) = offer_of(&[("report.pdf", b"theirs"), ("photos/a.jpg", b"jpg")]);
        let mut disk = DiskSink::new(dir.clone());
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, b"theirs").unwrap();
        // Before the end, nothing under a real name but the old file.
        assert_eq!(std::fs::read(dir.join("report.pdf")).unwrap(), b"mine");
        disk.complete(&offer.files[0]).unwrap();
        assert!(
            !dir.join("report (1).pdf").exists(),
            "named only when committed"
        );
        disk.commit().unwrap();
        let path = disk.saved[0].clone();
        assert_eq!(path, dir.join("report (1).pdf"));
        assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
        assert_eq!(std::fs::read(dir.join("report.pdf")).unwrap(), b"mine");
        // The partial is gone once the file is in place.
        assert!(!partial_path(&dir, &offer.files[0].root).exists());
        let saved = save(&dir, &offer, &hashes, &[b"again", b"jpg"]);
        assert_eq!(saved[0], dir.join("report (2).pdf"));
        assert_eq!(std::fs::read(dir.join("photos/a.jpg")).unwrap(), b"jpg");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_planted_symlink_does_not_lead_out_of_the_folder() {
        let dir = tmp("symlink");
        let outside = tmp("outside");
        std::os::unix::fs::symlink(&outside, dir.join("photos")).unwrap();
        let (offer, hashes) = offer_of(&[("photos/a.jpg", b"x")]);
        let mut disk = DiskSink::new(dir.clone());
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, b"x").unwrap();
        disk.complete(&offer.files[0]).unwrap();
        let err = disk.commit().unwrap_err();
        assert!(err.contains("not a folder"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[test]
    fn a_partial_file_is_found_again_and_checked_before_resuming() {
        let dir = tmp("resume");
        let data: Vec<u8> = (0..3 * CHUNK + 10).map(|i| (i % 251) as u8).collect();
        let (offer, hashes) = offer_of(&[("big.bin", &data)]);
        std::fs::write(
            partial_path(&dir, &offer.files[0].root),
            &data[..2 * CHUNK + 5],
        )
        .unwrap();
        assert_eq!(resumable(&dir, &offer), vec![2 * CHUNK as u64 + 5]);
        let mut disk = DiskSink::new(dir.clone());
        disk.begin(0, &offer.files[0], 2 * CHUNK as u64, &hashes[0])
            .unwrap();
        disk.write(0, &data[2 * CHUNK..]).unwrap();
        disk.complete(&offer.files[0]).unwrap();
        disk.commit().unwrap();
        assert_eq!(std::fs::read(&disk.saved[0]).unwrap(), data);
        // A partial whose bytes were altered on disk is not trusted.
        let mut bad = data[..CHUNK].to_vec();
        bad[7] ^= 1;
        std::fs::write(partial_path(&dir, &offer.files[0].root), &bad).unwrap();
        let mut disk = DiskSink::new(dir.clone());
        assert!(disk
            .begin(0, &offer.files[0], CHUNK as u64, &hashes[0])
            .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_same_content_twice_in_one_offer_lands_twice() {
        let dir = tmp("twice");
        let (offer, hashes) = offer_of(&[("a.txt", b"same"), ("b/a.txt", b"same")]);
        let saved = save(&dir, &offer, &hashes, &[b"same", b"same"]);
        assert_eq!(saved, vec![dir.join("a.txt"), dir.join("b/a.txt")]);
        for p in saved {
            assert_eq!(std::fs::read(p).unwrap(), b"same");
        }
        assert!(!partial_path(&dir, &offer.files[0].root).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `a.txt` complete and `b.txt`, the same content, begun: it shares `a.txt`'s partial file.
    fn twin_open(dir: &Path) -> (DiskSink, ValidOffer, Vec<Vec<Hash>>) {
        let (offer, hashes) = offer_of(&[("a.txt", b"same"), ("b.txt", b"same")]);
        let mut disk = DiskSink::new(dir.to_path_buf());
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, b"same").unwrap();
        disk.complete(&offer.files[0]).unwrap();
        disk.begin(1, &offer.files[1], 0, &hashes[1]).unwrap();
        (disk, offer, hashes)
    }

    #[test]
    fn a_second_copy_still_open_when_its_twin_is_committed_lands_too() {
        let dir = tmp("twin-open");
        let (mut disk, offer, _) = twin_open(&dir);
        disk.commit().unwrap();
        disk.write(1, b"same").unwrap();
        disk.complete(&offer.files[1]).unwrap();
        disk.commit().unwrap();
        assert_eq!(disk.saved, vec![dir.join("a.txt"), dir.join("b.txt")]);
        assert_eq!(std::fs::read(dir.join("b.txt")).unwrap(), b"same");
        assert!(!partial_path(&dir, &offer.files[0].root).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stop_never_leaves_a_partial_file_that_is_also_a_saved_file() {
        let dir = tmp("twin-stop");
        let (mut disk, offer, hashes) = twin_open(&dir);
        // The connection drops while the twin is open.
        disk.stop(false).unwrap();
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"same");
        let partial = partial_path(&dir, &offer.files[0].root);
        assert!(!partial.exists());
        // Even if one were left (a crash), it is neither resumed nor written through.
        std::fs::hard_link(dir.join("a.txt"), &partial).unwrap();
        assert_eq!(resumable(&dir, &offer), vec![0, 0]);
        let mut disk = DiskSink::new(dir.clone());
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, b"sa").unwrap();
        disk.stop(false).unwrap();
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"same");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn free_space_is_known() {
        assert!(free_space(&std::env::temp_dir()).unwrap() > 0);
    }
}
