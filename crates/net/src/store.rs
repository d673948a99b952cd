//! The identity on disk, and the contact list (`contacts.bin`, sealed under a key derived
//! from the identity): the only things EXTRA SAFE keeps between runs.
//!
//! `$XDG_DATA_HOME/extrasafe/identity.key` (default `~/.local/share/extrasafe`), directory
//! mode 0700 and file mode 0600. A file others can read is refused, as ssh refuses such keys.
//! Writes go to a temporary file in the same directory, are synced, then renamed, so a crash
//! never leaves a half-written key under the real name.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use extrasafe_core::access::TicketSecret;
use extrasafe_core::contacts::{ContactBook, ContactsError, ContactsKey, MAX_FILE_LEN};
use extrasafe_core::inbox::{self, ChainError, ChainFileKey, InboxChain, OwnInbox};
use extrasafe_core::keyfile::{self, KeyFileError};
use extrasafe_core::Identity;

const KEY_FILE: &str = "identity.key";
/// 16 random bytes that, with the identity key, make the secret of our current ticket.
const TICKET_SALT_FILE: &str = "ticket.salt";
const CONTACTS_FILE: &str = "contacts.bin";
/// Held (an exclusive lock on it) while the contact list is read, changed and written, so two
/// processes (a listener and a caller) never lose each other's changes.
const CONTACTS_LOCK: &str = ".contacts.lock";
/// Our inbox chain (`core::inbox`), sealed under a key derived from the identity.
const INBOX_FILE: &str = "inbox.bin";
/// A front end's settings (devices, folders: what the person chose; no contact named).
const SETTINGS_FILE: &str = "settings.json";

/// Why the identity could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Neither `XDG_DATA_HOME` nor `HOME` is set.
    #[error("no data directory: set XDG_DATA_HOME or HOME, or pass --data-dir")]
    NoDataDir,
    /// A file-system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file is readable or writable by others.
    #[error(
        "{0} is accessible by other users; fix it with `chmod 600 {0}` (and 700 on its folder)"
    )]
    Permissions(PathBuf),
    /// No identity exists yet.
    #[error("no identity yet in {0}; create one with `extrasafe id`")]
    Missing(PathBuf),
    /// The file's content could not be opened.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The contact list could not be opened.
    #[error(transparent)]
    Contacts(#[from] ContactsError),
    /// Our inbox chain's file could not be used.
    #[error(transparent)]
    Inbox(ChainError),
}

/// Where the identity lives.
#[derive(Clone, Debug)]
pub struct IdentityStore {
    dir: PathBuf,
    /// The folder is ours alone (the default location): its mode is kept at 0700 even if it
    /// already existed. A folder the user named is left as it is, since it may be shared.
    owned: bool,
}

impl IdentityStore {
    /// The per-user default location (XDG base directory spec).
    pub fn default_location() -> Result<Self, StoreError> {
        let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME").ok_or(StoreError::NoDataDir)?)
                .join(".local/share"),
        };
        Ok(Self {
            dir: base.join("extrasafe"),
            owned: true,
        })
    }

    /// A store in the given directory (created with mode 0700 if missing).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            owned: false,
        }
    }

    /// The front end's saved settings, as it wrote them (`None`: never saved). They name no
    /// contact: devices and folders the person picked.
    pub fn load_settings(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(SETTINGS_FILE);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path, e)),
        }
    }

    /// Keeps the front end's settings (mode 0600, written whole or not at all).
    pub fn save_settings(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_private(SETTINGS_FILE, bytes)
    }

    /// The key file's path.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// True if an identity file exists.
    pub fn exists(&self) -> bool {
        self.key_path().exists()
    }

    /// True if the stored identity is passphrase-protected.
    pub fn is_sealed(&self) -> Result<bool, StoreError> {
        Ok(keyfile::is_sealed(&self.read()?))
    }

    /// Reads the key file through one descriptor opened without following a symbolic link:
    /// its mode, size and content are of the same file, whatever is swapped in meanwhile.
    fn read(&self) -> Result<Vec<u8>, StoreError> {
        self.read_private(KEY_FILE, 4096)?
            .ok_or_else(|| StoreError::Missing(self.dir.clone()))
    }

    /// Reads `name` if it exists: a regular file, not a link, private (0600), at most `max`
    /// bytes, all checked on the descriptor that is read.
    fn read_private(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(name);
        let f = match fs::OpenOptions::new()
            .read(true)
            // Not following a link; not waiting on a FIFO planted in the file's place.
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(KeyFileError::Malformed("a symbolic link, not a file").into())
            }
            Err(source) => return Err(io("reading", &path, source)),
        };
        let meta = f.metadata().map_err(|e| io("reading", &path, e))?;
        if !meta.is_file() {
            return Err(KeyFileError::Malformed("not a regular file").into());
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(StoreError::Permissions(path));
        }
        // The key file is 37 or 105 bytes; refuse to read anything huge planted in its place.
        if meta.len() > max {
            return Err(KeyFileError::Malformed("file too large").into());
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, max + 1), &mut bytes)
            .map_err(|e| io("reading", &path, e))?;
        Ok(Some(bytes))
    }

    /// The secret of our current ticket (made on first use): derived from the identity key and
    /// a salt kept in the store, so only the holder of the key can compute it.
    pub fn ticket_secret(&self, identity: &Identity) -> Result<TicketSecret, StoreError> {
        let salt = match self.read_private(TICKET_SALT_FILE, 16)? {
            Some(b) => <[u8; 16]>::try_from(b.as_slice())
                .map_err(|_| KeyFileError::Malformed("ticket salt of the wrong length"))?,
            None => return self.new_ticket(identity),
        };
        Ok(identity.ticket_secret(&salt))
    }

    /// Makes a new ticket secret: tickets given out before stop working (contacts are not
    /// affected: they are let in by the key they share with us).
    pub fn new_ticket(&self, identity: &Identity) -> Result<TicketSecret, StoreError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the OS random number generator failed");
        self.write_private(TICKET_SALT_FILE, &salt)?;
        Ok(identity.ticket_secret(&salt))
    }

    /// Loads the identity; `passphrase` is needed only if it is sealed.
    pub fn load(&self, passphrase: Option<&[u8]>) -> Result<Identity, StoreError> {
        let bytes = zeroize::Zeroizing::new(self.read()?);
        Ok(keyfile::decode(&bytes, passphrase)?)
    }

    /// Writes `identity`, sealed under `passphrase` if one is given, replacing any old file.
    pub fn save(&self, identity: &Identity, passphrase: Option<&[u8]>) -> Result<(), StoreError> {
        let bytes = match passphrase {
            Some(p) => {
                let (mut salt, mut nonce) = ([0u8; 16], [0u8; 24]);
                getrandom::fill(&mut salt).expect("the OS random source works");
                getrandom::fill(&mut nonce).expect("the OS random source works");
                zeroize::Zeroizing::new(keyfile::encode_sealed(
                    identity,
                    p,
                    keyfile::KdfCost::default(),
                    salt,
                    nonce,
                )?)
            }
            None => keyfile::encode_plain(identity),
        };
        self.write_private(KEY_FILE, &bytes)
    }

    /// Where the contact list lives.
    pub fn contacts_path(&self) -> PathBuf {
        self.dir.join(CONTACTS_FILE)
    }

    /// The contact list sealed under `identity` (empty if there is none yet).
    pub fn load_contacts(&self, identity: &Identity) -> Result<ContactBook, StoreError> {
        self.load_contacts_with(&ContactsKey::of(identity))
    }

    /// The contact list sealed under `key` (empty if there is none yet).
    pub fn load_contacts_with(&self, key: &ContactsKey) -> Result<ContactBook, StoreError> {
        let path = self.contacts_path();
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ContactBook::default()),
            Err(e) => return Err(io("reading", &path, e)),
            // A link or a device planted in its place is not followed (`/dev/zero` never ends).
            Ok(m) if !m.is_file() => return Err(ContactsError::Malformed("not a file").into()),
            Ok(_) => {}
        }
        // Never more than the largest valid file is read into memory.
        let mut bytes = Vec::new();
        fs::File::open(&path)
            .and_then(|f| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, MAX_FILE_LEN as u64 + 1),
                    &mut bytes,
                )
            })
            .map_err(|e| io("reading", &path, e))?;
        Ok(ContactBook::decode(&bytes, key)?)
    }

    /// The contents of the contact list file, a cheap stamp that changes whenever it is
    /// replaced (its inode, size and time), or `None` if there is none.
    pub fn contacts_stamp(&self) -> Option<(u64, u64, std::time::SystemTime)> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(self.contacts_path()).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()?))
    }

    /// Our inbox chain at `epoch`: read and stepped forward (the older value is erased from
    /// the disk, so a disk taken later cannot compute our earlier inboxes), or made on first
    /// use. Under the contacts lock, so two processes starting at once make one chain.
    pub fn own_inbox(&self, identity: &Identity, epoch: u64) -> Result<OwnInbox, StoreError> {
        let key = ChainFileKey::of(identity);
        let _lock = self.lock_contacts()?;
        let (own, write) = match self.read_own_inbox(&key)? {
            Some(o) if o.chain.epoch() >= epoch => (o, false),
            Some(mut o) => {
                o.advance_to(epoch).map_err(StoreError::Inbox)?;
                (o, true)
            }
            None => (fresh_inbox(epoch), true),
        };
        if write {
            self.write_own_inbox(&key, &own)?;
        }
        Ok(own)
    }

    /// Replaces our inbox chain by a new one from `epoch` on (when a contact is removed:
    /// whoever holds the old chain can no longer follow our presence). The old chain is kept
    /// as the previous one: contacts who hold it still write their intents into its inbox
    /// (and read records of their own for our addresses) until their next call with us,
    /// which tells them the new one.
    pub fn renew_inbox(&self, identity: &Identity, epoch: u64) -> Result<OwnInbox, StoreError> {
        let key = ChainFileKey::of(identity);
        let _lock = self.lock_contacts()?;
        let fresh = fresh_inbox(epoch);
        let own = match self.read_own_inbox(&key)? {
            Some(mut old) => {
                // Stepped forward first, so the file never holds an older value than before.
                if old.chain.epoch() < epoch {
                    old.advance_to(epoch).map_err(StoreError::Inbox)?;
                }
                old.replaced_by(fresh.chain, fresh.since_ms)
            }
            None => fresh,
        };
        self.write_own_inbox(&key, &own)?;
        Ok(own)
    }

    /// Our inbox chain as the file has it, if there is one.
    pub fn read_own_inbox(&self, key: &ChainFileKey) -> Result<Option<OwnInbox>, StoreError> {
        let path = self.dir.join(INBOX_FILE);
        let mut bytes = Vec::new();
        match fs::File::open(&path) {
            Ok(f) => {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, inbox::FILE_LEN as u64 + 1),
                    &mut bytes,
                )
                .map_err(|e| io("reading", &path, e))?;
                Ok(Some(
                    OwnInbox::decode(&bytes, key).map_err(StoreError::Inbox)?,
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path, e)),
        }
    }

    fn write_own_inbox(&self, key: &ChainFileKey, own: &OwnInbox) -> Result<(), StoreError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        self.write_private(INBOX_FILE, &own.encode(key, nonce))
    }

    /// Seals and writes the contact list, replacing the old one in one step. The names,
    /// tickets and verification marks come from `book`; each contact's rendezvous roots (and
    /// inbox chain, unless `book` has a newer one) are kept as the file has them (calls
    /// replace them, possibly in another process, and a list loaded before that call must not
    /// put the old ones back).
    pub fn save_contacts(&self, identity: &Identity, book: &ContactBook) -> Result<(), StoreError> {
        let key = ContactsKey::of(identity);
        let _lock = self.lock_contacts()?;
        let on_disk = self.load_contacts_with(&key).unwrap_or_default();
        let mut out = book.clone();
        for c in book.list() {
            let disk = on_disk.by_peer(&c.peer);
            out.set_roots(&c.peer, disk.and_then(|d| d.roots.clone()));
            if let Some(d) = disk {
                if let Some(chain) = d.inbox.clone() {
                    out.set_inbox(&c.peer, chain, d.holds_ours);
                }
            }
        }
        self.write_contacts(&key, &out)
    }

    /// Changes the contact list on disk: reads it, lets `change` edit it, and writes it back
    /// if `change` says so, all under the contacts lock.
    pub fn update_contacts<R>(
        &self,
        key: &ContactsKey,
        change: impl FnOnce(&mut ContactBook) -> (bool, R),
    ) -> Result<R, StoreError> {
        let _lock = self.lock_contacts()?;
        let mut book = self.load_contacts_with(key)?;
        let (write, out) = change(&mut book);
        if write {
            self.write_contacts(key, &book)?;
        }
        Ok(out)
    }

    fn write_contacts(&self, key: &ContactsKey, book: &ContactBook) -> Result<(), StoreError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        self.write_private(CONTACTS_FILE, &book.encode(key, nonce))
    }

    /// Waits for, and holds until dropped, the exclusive lock on the contact list.
    fn lock_contacts(&self) -> Result<fs::File, StoreError> {
        self.make_dir()?;
        let path = self.dir.join(CONTACTS_LOCK);
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("locking", &path, e))?;
        // (std's `File::lock` would do, from Rust 1.89.)
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", &path, e.into()))?;
        Ok(f)
    }

    fn make_dir(&self) -> Result<(), StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io("creating", &self.dir, e))?;
        if self.owned {
            // `create` keeps the mode of a directory that already existed: tighten it.
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io("securing", &self.dir, e))?;
        }
        Ok(())
    }

    /// Writes `name` in the store (mode 0600) through a synced temporary file and a rename.
    fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.make_dir()?;
        // A name of its own, so two processes saving at once never write into each other's file.
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).expect("the OS random number generator failed");
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = self.dir.join(format!(".{name}.{tag}.tmp"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| io("writing", &tmp, e))?;
        drop(f);
        let path = self.dir.join(name);
        fs::rename(&tmp, &path).map_err(|e| io("saving", &path, e))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Loads the identity, or makes and saves a new one if none exists.
    /// Returns the identity and whether it was just created.
    pub fn load_or_create(
        &self,
        passphrase: Option<&[u8]>,
    ) -> Result<(Identity, bool), StoreError> {
        match self.load(passphrase) {
            Ok(id) => Ok((id, false)),
            Err(StoreError::Missing(_)) => {
                let id = crate::new_identity();
                self.save(&id, passphrase)?;
                Ok((id, true))
            }
            Err(e) => Err(e),
        }
    }
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A new inbox chain from `epoch` on, made now.
fn fresh_inbox(epoch: u64) -> OwnInbox {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS random number generator failed");
    let since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    OwnInbox {
        chain: InboxChain::new(seed, epoch),
        since_ms,
        previous: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("es-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_inbox_chain_is_made_once_and_steps_forward_erasing_the_past() {
        let d = tmpdir("inbox");
        let store = IdentityStore::at(&d);
        let me = crate::new_identity();
        let first = store.own_inbox(&me, 100).unwrap();
        assert_eq!(first.chain.epoch(), 100);
        // The same chain next time, not a new one.
        assert_eq!(store.own_inbox(&me, 100).unwrap(), first);
        let mode = fs::metadata(d.join(INBOX_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // Later: stepped forward, and the file holds only the new value.
        let later = store.own_inbox(&me, 103).unwrap();
        assert_eq!(later.chain, first.chain.at(103).unwrap());
        assert_eq!(later.since_ms, first.since_ms);
        let kept = OwnInbox::decode(
            &fs::read(d.join(INBOX_FILE)).unwrap(),
            &ChainFileKey::of(&me),
        )
        .unwrap();
        assert_eq!(kept, later);
        assert!(
            kept.chain.at(100).is_err(),
            "the past cannot be computed from the file"
        );
        // A clock gone back keeps what is there.
        assert_eq!(store.own_inbox(&me, 101).unwrap(), later);
        // Renewed (a contact was removed): another chain, made later, that nothing of the
        // old one computes; the file holds it.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let renewed = store.renew_inbox(&me, 103).unwrap();
        assert_ne!(renewed.chain, later.chain);
        assert!(renewed.since_ms > later.since_ms);
        assert_eq!(
            store
                .read_own_inbox(&ChainFileKey::of(&me))
                .unwrap()
                .unwrap(),
            renewed
        );
        assert_eq!(store.own_inbox(&me, 103).unwrap(), renewed);
        // The old chain is kept as the previous one (contacts still hold it), and steps
        // forward with the new one; a second renewal drops it.
        assert_eq!(
            renewed.previous,
            Some((later.chain.clone(), later.since_ms))
        );
        let stepped = store.own_inbox(&me, 105).unwrap();
        assert_eq!(
            stepped.previous.as_ref().map(|(c, _)| c.clone()),
            Some(later.chain.at(105).unwrap())
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again = store.renew_inbox(&me, 105).unwrap();
        assert_eq!(
            again.previous,
            Some((stepped.chain.clone(), stepped.since_ms))
        );
        // Another identity cannot open it, and says so.
        assert!(matches!(
            store.own_inbox(&crate::new_identity(), 104),
            Err(StoreError::Inbox(ChainError::Unreadable))
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn creates_with_private_modes_and_reloads() {
        let d = tmpdir("modes");
        let store = IdentityStore::at(d.join("extrasafe"));
        // A named folder that exists is left alone; a missing one is made private.
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        IdentityStore::at(&d)
            .save(&crate::new_identity(), None)
            .unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let (id, created) = store.load_or_create(None).unwrap();
        assert!(created);
        let dir_mode = fs::metadata(d.join("extrasafe"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let file_mode = fs::metadata(store.key_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!((dir_mode, file_mode), (0o700, 0o600));
        let (again, created) = store.load_or_create(None).unwrap();
        assert!(!created);
        assert_eq!(again.peer_id(), id.peer_id());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_key_file_swapped_for_a_link_or_a_plain_key_is_refused() {
        let d = tmpdir("swap");
        let store = IdentityStore::at(&d);
        let id = crate::new_identity();
        store.save(&id, Some(b"hunter22")).unwrap();
        assert!(store.is_sealed().unwrap());
        // Between the check and the load, a plain key of someone else's is put in its place.
        let planted = crate::new_identity();
        store.save(&planted, None).unwrap();
        assert!(matches!(
            store.load(Some(b"hunter22")),
            Err(StoreError::KeyFile(KeyFileError::UnexpectedPlain))
        ));
        // A symbolic link to a key elsewhere is not followed.
        let elsewhere = d.join("elsewhere.key");
        fs::rename(store.key_path(), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, store.key_path()).unwrap();
        assert!(matches!(
            store.load(None),
            Err(StoreError::KeyFile(KeyFileError::Malformed(_)))
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_ticket_secret_is_kept_and_renewed() {
        let d = tmpdir("ticket");
        let store = IdentityStore::at(&d);
        let id = crate::new_identity();
        let first = store.ticket_secret(&id).unwrap();
        assert_eq!(store.ticket_secret(&id).unwrap(), first);
        let mode = fs::metadata(d.join(TICKET_SALT_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The salt alone is not the secret.
        let salt = fs::read(d.join(TICKET_SALT_FILE)).unwrap();
        assert!(!salt.windows(16).any(|w| w == first.as_bytes()));
        let second = store.new_ticket(&id).unwrap();
        assert_ne!(second, first);
        assert_eq!(store.ticket_secret(&id).unwrap(), second);
        // Another identity with the same salt file has another secret.
        assert_ne!(store.ticket_secret(&crate::new_identity()).unwrap(), second);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn group_readable_key_is_refused() {
        let d = tmpdir("perm");
        let store = IdentityStore::at(&d);
        store.save(&crate::new_identity(), None).unwrap();
        fs::set_permissions(store.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(store.load(None), Err(StoreError::Permissions(_))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sealed_store_needs_the_passphrase() {
        let d = tmpdir("sealed");
        let store = IdentityStore::at(&d);
        let id = crate::new_identity();
        store.save(&id, Some(b"hunter2")).unwrap();
        assert!(store.is_sealed().unwrap());
        assert!(matches!(
            store.load(None),
            Err(StoreError::KeyFile(KeyFileError::NeedsPassphrase))
        ));
        assert!(matches!(
            store.load(Some(b"nope")),
            Err(StoreError::KeyFile(KeyFileError::WrongPassphrase))
        ));
        assert_eq!(
            store.load(Some(b"hunter2")).unwrap().peer_id(),
            id.peer_id()
        );
        let raw = fs::read(store.key_path()).unwrap();
        assert!(!raw.windows(32).any(|w| w == &id.seed()[..]));
        fs::remove_dir_all(&d).unwrap();
    }
}
