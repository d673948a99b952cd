//! The receiving side's files: verified data goes to a partial file in the download folder,
//! which becomes the real file only once complete and durable (synced, then linked under a
//! name nobody has, so nothing is ever overwritten). Completed files are committed in
//! batches, one file-system sync per batch, so ten thousand small files do not cost ten
//! thousand syncs. The partial file is named by the content's hash, so the same content
//! offered again later resumes from it.
//!
//! Every step is taken relative to one opened handle of the download folder (`cap-std`): no
//! path is looked up from the root again, `..` and absolute paths cannot be expressed, and
//! no symbolic link is followed, neither out of the folder nor within it. Folders are opened
//! one level at a time without following links, the partial file is opened without
//! following one and written through its handle, and a name is given to it only after
//! checking, before and after, that the name leads to the very file written. A link swapped
//! in during a transfer (for the partial file or for a folder) makes that file fail; it
//! never makes us write elsewhere. Files are saved readable and writable by us only (0600),
//! folders we create are ours only (0700).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{
    Dir, DirBuilder, DirBuilderExt, File, Metadata, MetadataExt, OpenOptions, OpenOptionsExt,
    Permissions, PermissionsExt,
};
use extrasafe_core::transfer::hash::{chunk_hash, Hash, CHUNK};
use extrasafe_core::transfer::names::{numbered, NameRules, PARTIAL_PREFIX};
use extrasafe_core::transfer::offer::{ValidFile, ValidOffer};
use extrasafe_core::transfer::receive::{FileSink, SinkError, StorageProblem};

/// Permissions of a received file: read and write for us only.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Permissions of a folder we create: ours only.
pub(crate) const DIR_MODE: u32 = 0o700;

/// The partial file for content with this root hash: its name at the top of the download
/// folder.
pub(crate) fn partial_name(root: &Hash) -> String {
    let hex: String = root[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{PARTIAL_PREFIX}{hex}")
}

/// Opens the download folder the person chose (a link there is their choice, and followed);
/// everything below it goes through the handle.
pub(crate) fn open_download_dir(path: &Path) -> io::Result<Dir> {
    Dir::open_ambient_dir(path, cap_std::ambient_authority())
}

/// Bytes of each offered file already on disk from an earlier attempt.
pub(crate) fn resumable(dir: &Path, offer: &ValidOffer) -> Vec<u64> {
    match open_download_dir(dir) {
        Ok(d) => resumable_in(&d, offer),
        Err(_) => vec![0; offer.files.len()],
    }
}

/// [`resumable`] in an open folder.
pub(crate) fn resumable_in(dir: &Dir, offer: &ValidOffer) -> Vec<u64> {
    offer
        .files
        .iter()
        .map(|f| {
            dir.symlink_metadata(partial_name(&f.root))
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
fn reusable(m: &Metadata) -> bool {
    m.is_file() && m.nlink() == 1
}

/// Which file a name leads to: (device, inode).
type Inode = (u64, u64);

fn inode(m: &Metadata) -> Inode {
    (m.dev(), m.ino())
}

/// Free bytes for us in `dir`'s file system.
pub(crate) fn free_space(dir: &Path) -> io::Result<u64> {
    let d = open_download_dir(dir)?;
    let s = rustix::fs::fstatvfs(&d).map_err(io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Removes our partial file `name`, only if it is still the file we wrote (a name swapped
/// for something else is left to whoever swapped it).
fn remove_ours(dir: &Dir, name: &str, ours: Inode) {
    if dir
        .symlink_metadata(name)
        .is_ok_and(|m| m.is_file() && inode(&m) == ours)
    {
        let _ = dir.remove_file(name);
    }
}

/// A fresh partial file `name` (a new inode, never an existing file's): whatever has the name
/// is removed first (a stale partial, a second name of a saved file, a planted link: removing
/// a name never touches what it pointed to), then the file is created exclusively, without
/// following links, 0600.
fn create_partial(dir: &Dir, name: &str) -> io::Result<File> {
    match dir.symlink_metadata(name) {
        Ok(m) if m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} is in the way"),
            ))
        }
        Ok(_) => dir.remove_file(name)?,
        Err(_) => {}
    }
    let mut o = OpenOptions::new();
    o.read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .follow(FollowSymlinks::No);
    dir.open_with(name, &o)
}

/// The partial file `name` from an earlier attempt, to resume: opened without following a
/// link, and only if it is a plain file with no other name.
fn reopen_partial(dir: &Dir, name: &str) -> Result<File, SinkError> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).follow(FollowSymlinks::No);
    let f = dir.open_with(name, &o).map_err(|e| {
        SinkError::io(
            "the partial data from an earlier attempt cannot be reused",
            &e,
        )
    })?;
    let m = f
        .metadata()
        .map_err(|e| SinkError::io(format_args!("{name}"), &e))?;
    if !reusable(&m) {
        return Err(SinkError::new(
            StorageProblem::Changed,
            "the partial data from an earlier attempt cannot be reused",
        ));
    }
    Ok(f)
}

struct Open {
    /// `None` when identical content is already complete in this batch: nothing to write.
    file: Option<File>,
    /// The partial file's name in the download folder, and the file it is.
    partial: String,
    inode: Inode,
    /// Where the file ends now, and up to where the disk was already asked to write it.
    end: u64,
    flushed: u64,
}

/// A file complete and verified, not yet synced and named.
struct Ready {
    partial: String,
    inode: Inode,
    file: ValidFile,
}

/// Written data is handed to the disk every this many bytes, so the sync at the end of a big
/// file waits for little and the page cache never fills with our dirty pages.
const WRITEBACK_STEP: u64 = 16 << 20;

/// Files complete but not yet committed: at most this many, or this many bytes.
const BATCH_FILES: usize = 1000;
const BATCH_BYTES: u64 = 256 * 1024 * 1024;

/// Writes verified data to disk.
pub(crate) struct DiskSink {
    dir: Arc<Dir>,
    /// The folder's path, to say where files went.
    path: PathBuf,
    /// Names written only if these rules allow them (checked with the offer already; again
    /// here, so no other path can bring a hidden name to disk).
    rules: NameRules,
    open: Option<Open>,
    ready: Vec<Ready>,
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
    /// Opens the download folder `path` (see [`open_download_dir`]).
    pub(crate) fn open(path: &Path, rules: NameRules) -> io::Result<Self> {
        Ok(Self::new(
            open_download_dir(path)?,
            path.to_path_buf(),
            rules,
        ))
    }

    /// Writes into `dir`, the folder at `path`.
    pub(crate) fn new(dir: Dir, path: PathBuf, rules: NameRules) -> Self {
        Self {
            dir: Arc::new(dir),
            path,
            rules,
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
    pub(crate) fn complete(&mut self, file: &ValidFile) -> Result<(), SinkError> {
        let o = self.open.take().ok_or_else(no_file_open)?;
        drop(o.file);
        self.ready_bytes += file.size;
        self.completed += 1;
        self.ready.push(Ready {
            partial: o.partial,
            inode: o.inode,
            file: file.clone(),
        });
        Ok(())
    }

    /// Makes every completed file durable and gives it its name, never replacing anything
    /// (`name (1).ext` if the name is taken).
    pub(crate) fn commit(&mut self) -> Result<(), SinkError> {
        let (saved, result) = self.take_batch().commit();
        self.saved.extend(saved);
        result
    }

    /// The completed files not yet committed, to commit elsewhere (see [`Batch::commit`]).
    pub(crate) fn take_batch(&mut self) -> Batch {
        self.ready_bytes = 0;
        Batch {
            dir: self.dir.clone(),
            path: self.path.clone(),
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
    pub(crate) fn stop(&mut self, discard: bool) -> Result<(), SinkError> {
        let twin = match self.open.as_ref() {
            Some(o) if o.file.is_none() => Some((o.partial.clone(), o.inode)),
            Some(o) if discard => {
                remove_ours(&self.dir, &o.partial, o.inode);
                None
            }
            _ => None,
        };
        let result = self.commit();
        self.open = None;
        if let Some((p, ino)) = twin {
            remove_ours(&self.dir, &p, ino);
        }
        result
    }
}

/// Completed files on their way to their names.
pub(crate) struct Batch {
    dir: Arc<Dir>,
    path: PathBuf,
    ready: Vec<Ready>,
    /// A partial file still needed after this batch.
    keep: Option<String>,
}

impl Batch {
    /// Makes every completed file durable and gives it its name, never replacing anything
    /// (`name (1).ext` if the name is taken).
    /// Returns where each file went, also when a later one failed.
    pub(crate) fn commit(self) -> (Vec<PathBuf>, Result<(), SinkError>) {
        let mut saved = Vec::with_capacity(self.ready.len());
        let result = self.commit_into(&mut saved);
        (saved, result)
    }

    fn commit_into(&self, saved: &mut Vec<PathBuf>) -> Result<(), SinkError> {
        if self.ready.is_empty() {
            return Ok(());
        }
        // The folder's handle is for lookups only (`O_PATH`): the sync needs the folder
        // opened for reading, which `.` relative to the handle is.
        let syncing = |e: rustix::io::Errno| {
            SinkError::io(
                format_args!("syncing {}", self.path.display()),
                &io::Error::from(e),
            )
        };
        let readable = rustix::fs::openat(
            &*self.dir,
            ".",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(syncing)?;
        let sync = || rustix::fs::syncfs(&readable).map_err(syncing);
        sync()?;
        let ready = &self.ready;
        for (i, r) in ready.iter().enumerate() {
            let path = self.link(r)?;
            saved.push(path);
            // The same content twice in one offer shares one partial file.
            if !ready[i + 1..].iter().any(|o| o.partial == r.partial)
                && self.keep.as_ref() != Some(&r.partial)
            {
                remove_ours(&self.dir, &r.partial, r.inode);
            }
        }
        // The new names, durable too.
        sync()
    }

    /// Gives the partial file of `r` its name (in its folder, created as needed).
    fn link(&self, r: &Ready) -> Result<PathBuf, SinkError> {
        let (folder, rel) = self.make_parents(&r.file)?;
        let parent: &Dir = folder.as_ref().unwrap_or(&*self.dir);
        let replaced = || {
            SinkError::new(
                StorageProblem::Changed,
                format!(
                    "{}: its partial file ({}) was replaced during the transfer; nothing was saved",
                    r.file.path, r.partial
                ),
            )
        };
        // The partial file's name must still lead to the file we wrote…
        match self.dir.symlink_metadata(&r.partial) {
            Ok(m) if m.is_file() && inode(&m) == r.inode => {}
            _ => return Err(replaced()),
        }
        let name = r.file.path.file_name();
        for n in 0..10_000u32 {
            let candidate = if n == 0 {
                name.to_string()
            } else {
                numbered(name, n)
            };
            // A hard link fails if the name exists: no window in which another file could
            // be replaced. It never follows a link: at worst it names the link itself.
            match self.dir.hard_link(&r.partial, parent, &candidate) {
                Ok(()) => {
                    // …and the new name to that file (the partial may have been swapped
                    // between the check and the link): else the name goes again.
                    return match parent.symlink_metadata(&candidate) {
                        Ok(m) if m.is_file() && inode(&m) == r.inode => {
                            Ok(self.path.join(&rel).join(candidate))
                        }
                        _ => {
                            let _ = parent.remove_file(&candidate);
                            Err(replaced())
                        }
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SinkError::io(rel.join(&candidate).display(), &e)),
            }
        }
        Err(SinkError::new(
            StorageProblem::InTheWay,
            format!("no free name for {}", r.file.path),
        ))
    }

    /// Creates and opens the folders of `file`'s path, one level at a time, each opened
    /// without following a link: a link (or a file) where a folder must be stops the file,
    /// wherever it points. Returns the innermost folder (`None`: the download folder itself)
    /// and its path relative to the download folder.
    fn make_parents(&self, file: &ValidFile) -> Result<(Option<Dir>, PathBuf), SinkError> {
        let mut at: Option<Dir> = None;
        let mut rel = PathBuf::new();
        let comps: Vec<&str> = file.path.components().collect();
        let mut builder = DirBuilder::new();
        builder.mode(DIR_MODE);
        for c in &comps[..comps.len() - 1] {
            let here: &Dir = at.as_ref().unwrap_or(&*self.dir);
            rel.push(c);
            match here.create_dir_with(c, &builder) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SinkError::io(rel.display(), &e)),
            }
            let next = here
                .open_dir_nofollow(c)
                .map_err(|e| match here.symlink_metadata(c) {
                    Ok(m) if !m.is_dir() => SinkError::new(
                        StorageProblem::InTheWay,
                        format!("{} exists and is not a folder", rel.display()),
                    ),
                    _ => SinkError::io(rel.display(), &e),
                })?;
            at = Some(next);
        }
        Ok((at, rel))
    }
}

/// Files are written on the file writer's thread (`run::receive`), never on a thread of the
/// async runtime, which also carries the call's audio: checked in every debug build, so every
/// test that receives a file checks it.
fn off_runtime() {
    debug_assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "a file write on the async runtime"
    );
}

/// A write with no file begun: the receiver's order guarantees it never happens.
fn no_file_open() -> SinkError {
    SinkError::new(StorageProblem::Other, "no file open")
}

/// Reads back the first `len` bytes of a partial file and checks them chunk by chunk; returns
/// how much of it verified.
fn verified_prefix(file: &mut File, len: u64, chunks: &[Hash]) -> io::Result<u64> {
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
    ) -> Result<(), SinkError> {
        off_runtime();
        self.rules.check(&file.path).map_err(|why| {
            SinkError::new(StorageProblem::Other, format!("{}: {why}", file.path))
        })?;
        let partial = partial_name(&file.root);
        if let Some(r) = self.ready.iter().find(|r| r.partial == partial) {
            // Identical content already complete in this batch: that partial is kept as it
            // is (it will be linked twice) and this copy is not written at all.
            self.open = Some(Open {
                file: None,
                inode: r.inode,
                partial,
                end: 0,
                flushed: 0,
            });
            return Ok(());
        }
        let mut f = if resumed > 0 {
            reopen_partial(&self.dir, &partial)?
        } else {
            create_partial(&self.dir, &partial).map_err(|e| SinkError::io(&partial, &e))?
        };
        let here = || self.path.join(&partial);
        let failed = |e: io::Error| SinkError::io(here().display(), &e);
        // Also a partial file left by an older version, or made under a lax umask.
        f.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(failed)?;
        let ino = inode(&f.metadata().map_err(failed)?);
        if resumed > 0 {
            // Only whole chunks that still match their hashes are kept.
            let good = verified_prefix(&mut f, resumed, chunks).map_err(failed)?;
            if good != resumed {
                return Err(SinkError::new(
                    StorageProblem::Changed,
                    format!(
                        "the partial data of {} from an earlier attempt no longer verifies; remove {} and try again",
                        file.path,
                        here().display()
                    ),
                ));
            }
        }
        f.set_len(resumed).map_err(failed)?;
        f.seek(SeekFrom::Start(resumed)).map_err(failed)?;
        self.open = Some(Open {
            file: Some(f),
            partial,
            inode: ino,
            end: resumed,
            flushed: resumed,
        });
        Ok(())
    }

    fn write(&mut self, _index: usize, data: &[u8]) -> Result<(), SinkError> {
        off_runtime();
        let open = self.open.as_mut().ok_or_else(no_file_open)?;
        self.verified += data.len() as u64;
        let Some(f) = open.file.as_mut() else {
            return Ok(());
        };
        f.write_all(data)
            .map_err(|e| SinkError::io(self.path.join(&open.partial).display(), &e))?;
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

    fn end(&mut self, _index: usize) -> Result<(), SinkError> {
        // `end` needs the file's name: wrap the sink in a `NamedSink`.
        Err(SinkError::new(
            StorageProblem::Other,
            "DiskSink::end without a name",
        ))
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
    ) -> Result<(), SinkError> {
        self.disk.begin(i, f, resumed, chunks)
    }
    fn write(&mut self, i: usize, data: &[u8]) -> Result<(), SinkError> {
        self.disk.write(i, data)
    }
    fn end(&mut self, i: usize) -> Result<(), SinkError> {
        self.disk.complete(&self.offer.files[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extrasafe_core::transfer::hash::FileHasher;
    use extrasafe_core::transfer::wire::OfferedFile;
    use std::os::unix::fs::{symlink, PermissionsExt as _};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("es-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn partial_path(dir: &Path, root: &Hash) -> PathBuf {
        dir.join(partial_name(root))
    }

    fn sink(dir: &Path) -> DiskSink {
        DiskSink::open(dir, NameRules::default()).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Everything under `dir`: each entry's relative path, and its content (files), target
    /// (links) or `/` (folders); sorted.
    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        fn walk(base: &Path, at: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in std::fs::read_dir(at).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_symlink() {
                    let t = std::fs::read_link(&p).unwrap();
                    out.push((rel, format!("-> {}", t.display()).into_bytes()));
                } else if m.is_dir() {
                    out.push((rel, b"/".to_vec()));
                    walk(base, &p, out);
                } else {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    fn offer_with(files: &[(&str, &[u8])], rules: NameRules) -> (ValidOffer, Vec<Vec<Hash>>) {
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
        (ValidOffer::check_with(wire, rules).unwrap(), hashes)
    }

    fn offer_of(files: &[(&str, &[u8])]) -> (ValidOffer, Vec<Vec<Hash>>) {
        offer_with(files, NameRules::default())
    }

    fn save_into(
        mut disk: DiskSink,
        offer: &ValidOffer,
        hashes: &[Vec<Hash>],
        data: &[&[u8]],
    ) -> Vec<PathBuf> {
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

    fn save(dir: &Path, offer: &ValidOffer, hashes: &[Vec<Hash>], data: &[&[u8]]) -> Vec<PathBuf> {
        save_into(sink(dir), offer, hashes, data)
    }

    #[test]
    fn files_appear_only_when_complete_and_never_replace_anything() {
        let dir = tmp("names");
        std::fs::write(dir.join("report.pdf"), b"mine").unwrap();
        let (offer, hashes) = offer_of(&[("report.pdf", b"theirs"), ("photos/a.jpg", b"jpg")]);
        let mut disk = sink(&dir);
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
    fn received_files_are_0600_and_created_folders_0700() {
        let dir = tmp("modes");
        let data: Vec<u8> = (0..2 * CHUNK + 3).map(|i| (i % 253) as u8).collect();
        let (offer, hashes) = offer_of(&[("deep/er/x.bin", &data), ("resumed.bin", &data[1..])]);
        // A partial file from an earlier attempt, readable by all: saved 0600 all the same.
        let old = partial_path(&dir, &offer.files[1].root);
        std::fs::write(&old, &data[1..CHUNK + 1]).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut disk = sink(&dir);
        assert_eq!(
            resumable_in(&disk.dir, &offer),
            vec![0, CHUNK as u64],
            "the planted partial is found"
        );
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, &data).unwrap();
        disk.complete(&offer.files[0]).unwrap();
        disk.begin(1, &offer.files[1], CHUNK as u64, &hashes[1])
            .unwrap();
        disk.write(1, &data[CHUNK + 1..]).unwrap();
        disk.complete(&offer.files[1]).unwrap();
        disk.commit().unwrap();
        assert_eq!(std::fs::read(dir.join("deep/er/x.bin")).unwrap(), data);
        assert_eq!(std::fs::read(dir.join("resumed.bin")).unwrap(), &data[1..]);
        assert_eq!(mode(&dir.join("deep/er/x.bin")), FILE_MODE);
        assert_eq!(mode(&dir.join("resumed.bin")), FILE_MODE);
        assert_eq!(mode(&dir.join("deep")), DIR_MODE);
        assert_eq!(mode(&dir.join("deep/er")), DIR_MODE);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hidden_names_never_reach_the_disk_unless_the_receiver_allows_them() {
        let dir = tmp("hidden");
        let allow = NameRules { allow_hidden: true };
        let (offer, hashes) = offer_with(
            &[(".config/autostart/x.desktop", b"[Desktop Entry]")],
            allow,
        );
        // An offer checked under lenient rules, written by a strict sink: refused at `begin`.
        let mut disk = sink(&dir);
        let err = disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap_err();
        assert!(err.detail.contains("hidden"), "{err}");
        assert!(snapshot(&dir).is_empty(), "{:?}", snapshot(&dir));
        // The receiver that allows them gets them, private like any other.
        let disk = DiskSink::open(&dir, allow).unwrap();
        save_into(disk, &offer, &hashes, &[b"[Desktop Entry]"]);
        let p = dir.join(".config/autostart/x.desktop");
        assert_eq!(std::fs::read(&p).unwrap(), b"[Desktop Entry]");
        assert_eq!(mode(&p), FILE_MODE);
        assert_eq!(mode(&dir.join(".config")), DIR_MODE);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_planted_symlink_does_not_lead_out_of_the_folder() {
        let dir = tmp("symlink");
        let outside = tmp("outside");
        symlink(&outside, dir.join("photos")).unwrap();
        let (offer, hashes) = offer_of(&[("photos/a.jpg", b"x")]);
        let mut disk = sink(&dir);
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, b"x").unwrap();
        disk.complete(&offer.files[0]).unwrap();
        let err = disk.commit().unwrap_err();
        assert!(err.detail.contains("not a folder"), "{err}");
        assert_eq!(err.problem, StorageProblem::InTheWay);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&outside);
    }

    /// The partial file's name swapped mid-way for a link to a file outside (existing or
    /// not) or for a second name of a file outside: the data goes on into the file we
    /// opened, the name is refused at the end, and nothing outside changes.
    #[test]
    fn a_partial_file_swapped_during_the_transfer_writes_nothing_outside() {
        for case in ["symlink", "dangling", "hardlink"] {
            let dir = tmp(&format!("swap-partial-{case}"));
            let outside = tmp(&format!("swap-partial-{case}-out"));
            std::fs::write(outside.join("victim"), b"canary").unwrap();
            let before = snapshot(&outside);
            let (offer, hashes) = offer_of(&[("report.txt", b"theirs, all of it")]);
            let mut disk = sink(&dir);
            disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
            disk.write(0, b"theirs, ").unwrap();
            let partial = partial_path(&dir, &offer.files[0].root);
            std::fs::remove_file(&partial).unwrap();
            match case {
                "symlink" => symlink(outside.join("victim"), &partial).unwrap(),
                "dangling" => symlink(outside.join("new"), &partial).unwrap(),
                _ => std::fs::hard_link(outside.join("victim"), &partial).unwrap(),
            }
            disk.write(0, b"all of it").unwrap();
            disk.complete(&offer.files[0]).unwrap();
            let err = disk.commit().unwrap_err();
            assert!(err.detail.contains("replaced"), "{case}: {err}");
            assert_eq!(err.problem, StorageProblem::Changed, "{case}");
            assert_eq!(snapshot(&outside), before, "{case}");
            assert!(
                std::fs::symlink_metadata(dir.join("report.txt")).is_err(),
                "{case}: no name given to what the swapped name leads to"
            );
            // The swapped name is left as it was found.
            assert!(std::fs::symlink_metadata(&partial).is_ok(), "{case}");
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&outside);
        }
    }

    /// A folder of the offer, made by an earlier file, swapped for a link before the next
    /// file is named: that file fails, nothing lands outside (nor, through the link, in
    /// another folder of the download folder).
    #[test]
    fn a_subfolder_swapped_during_the_transfer_writes_nothing_outside() {
        for case in ["outside", "inside"] {
            let dir = tmp(&format!("swap-dir-{case}"));
            let outside = tmp(&format!("swap-dir-{case}-out"));
            std::fs::write(outside.join("kept"), b"canary").unwrap();
            std::fs::create_dir(dir.join("other")).unwrap();
            let before = snapshot(&outside);
            let (offer, hashes) = offer_of(&[("sub/a.txt", b"first"), ("sub/b.txt", b"second")]);
            let mut disk = sink(&dir);
            disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
            disk.write(0, b"first").unwrap();
            disk.complete(&offer.files[0]).unwrap();
            disk.commit().unwrap();
            assert_eq!(mode(&dir.join("sub")), DIR_MODE);
            disk.begin(1, &offer.files[1], 0, &hashes[1]).unwrap();
            disk.write(1, b"sec").unwrap();
            std::fs::rename(dir.join("sub"), dir.join("sub-real")).unwrap();
            // Relative, so it would resolve inside the folder if it were followed.
            let target = if case == "outside" {
                outside.clone()
            } else {
                PathBuf::from("other")
            };
            symlink(&target, dir.join("sub")).unwrap();
            disk.write(1, b"ond").unwrap();
            disk.complete(&offer.files[1]).unwrap();
            let err = disk.commit().unwrap_err();
            assert!(
                err.detail.contains("sub exists and is not a folder")
                    && err.problem == StorageProblem::InTheWay,
                "{case}: {err}"
            );
            assert_eq!(snapshot(&outside), before, "{case}");
            assert_eq!(std::fs::read_dir(dir.join("other")).unwrap().count(), 0);
            assert_eq!(
                std::fs::read(dir.join("sub-real/a.txt")).unwrap(),
                b"first",
                "{case}"
            );
            assert_eq!(std::fs::read_dir(dir.join("sub-real")).unwrap().count(), 1);
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&outside);
        }
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
        let mut disk = sink(&dir);
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
        let mut disk = sink(&dir);
        assert!(disk
            .begin(0, &offer.files[0], CHUNK as u64, &hashes[0])
            .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Resume reads go through no link: a partial name leading to a file outside that holds
    /// the right bytes is neither counted nor read nor written.
    #[test]
    fn a_partial_file_that_is_a_link_is_never_resumed() {
        let dir = tmp("resume-link");
        let outside = tmp("resume-link-out");
        let data: Vec<u8> = (0..2 * CHUNK + 10).map(|i| (i % 249) as u8).collect();
        let (offer, hashes) = offer_of(&[("big.bin", &data)]);
        std::fs::write(outside.join("copy"), &data[..CHUNK]).unwrap();
        let before = snapshot(&outside);
        let partial = partial_path(&dir, &offer.files[0].root);
        symlink(outside.join("copy"), &partial).unwrap();
        assert_eq!(resumable(&dir, &offer), vec![0]);
        let mut disk = sink(&dir);
        assert!(disk
            .begin(0, &offer.files[0], CHUNK as u64, &hashes[0])
            .is_err());
        // Starting afresh replaces the link by a file of ours.
        disk.begin(0, &offer.files[0], 0, &hashes[0]).unwrap();
        disk.write(0, &data).unwrap();
        disk.complete(&offer.files[0]).unwrap();
        disk.commit().unwrap();
        assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), data);
        assert_eq!(snapshot(&outside), before);
        assert!(std::fs::symlink_metadata(&partial).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&outside);
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
        let mut disk = sink(dir);
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
        let mut disk = sink(&dir);
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
