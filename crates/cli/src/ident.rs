//! Getting the user's identity: ephemeral, or from the store with its passphrase.

use std::io::Read;

use extrasafe_core::access::TicketSecret;
use extrasafe_core::Identity;
use extrasafe_net::IdentityStore;
use zeroize::Zeroizing;

use crate::args::Global;
use crate::exit::{Failure, IDENTITY};

pub const PASSPHRASE_ENV: &str = "EXTRASAFE_PASSPHRASE";

pub struct Loaded {
    pub identity: Identity,
    pub created: bool,
    pub sealed: bool,
    pub store: Option<IdentityStore>,
    /// The secret of our ticket (a random one for an ephemeral identity).
    pub ticket_secret: TicketSecret,
}

impl Loaded {
    /// Our contacts (none for an ephemeral identity).
    pub fn contacts(&self) -> Result<extrasafe_core::contacts::ContactBook, Failure> {
        match &self.store {
            Some(store) => Ok(store.load_contacts(&self.identity)?),
            None => Ok(Default::default()),
        }
    }

    /// Our contacts' rendezvous roots, kept in the contact list (none for an ephemeral
    /// identity): calls with a contact replace them.
    pub fn roots(&self) -> Result<Option<std::sync::Arc<extrasafe_net::roots::Roots>>, Failure> {
        match &self.store {
            Some(store) => Ok(Some(extrasafe_net::roots::Roots::stored(
                store,
                &self.identity,
            )?)),
            None => Ok(None),
        }
    }

    /// Our inbox chain at this epoch, told to contacts in calls (none for an ephemeral
    /// identity; none, with a warning, if its file cannot be used).
    pub fn inbox(&self, out: crate::output::Output) -> Option<extrasafe_core::inbox::InboxChain> {
        let store = self.store.as_ref()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match store.own_inbox(&self.identity, extrasafe_core::inbox::inbox_epoch_of(now)) {
            Ok(o) => Some(o.chain),
            Err(e) => {
                out.warn(&format!("{e}. Contacts will find you as before."));
                None
            }
        }
    }

    /// The keys that let these peers in (and us into their nodes).
    pub fn contact_keys(
        &self,
        peers: &[extrasafe_core::PeerId],
    ) -> Vec<(extrasafe_core::PeerId, extrasafe_core::access::AccessKey)> {
        extrasafe_net::gate::contact_keys(&self.identity, peers)
    }
}

pub fn store(global: &Global) -> Result<IdentityStore, Failure> {
    match &global.data_dir {
        Some(d) => Ok(IdentityStore::at(d)),
        None => Ok(IdentityStore::default_location()?),
    }
}

/// The identity to use; created (unprotected) on first use unless ephemeral.
pub fn load(global: &Global) -> Result<Loaded, Failure> {
    if global.ephemeral {
        return Ok(Loaded {
            identity: extrasafe_net::new_identity(),
            created: true,
            sealed: false,
            store: None,
            ticket_secret: extrasafe_net::gate::random_ticket_secret(),
        });
    }
    let store = store(global)?;
    if store.exists() && store.is_sealed()? {
        // Asked on a terminal, a mistyped passphrase gets two more tries; one given by a
        // script (`--passphrase-fd`, the environment) is either right or an error at once.
        let tries = if asks_terminal(global) {
            PASSPHRASE_TRIES
        } else {
            1
        };
        let mut attempt = 1;
        let identity = loop {
            let pass = passphrase(global, "Passphrase for your EXTRA SAFE identity: ")?;
            match store.load(Some(pass.as_bytes())) {
                Err(extrasafe_net::StoreError::KeyFile(
                    extrasafe_core::keyfile::KeyFileError::WrongPassphrase,
                )) if attempt < tries => {
                    let left = tries - attempt;
                    eprintln!(
                        "That passphrase does not open the identity. Try again ({left} {} left).",
                        if left == 1 { "try" } else { "tries" }
                    );
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let ticket_secret = store.ticket_secret(&identity)?;
        return Ok(Loaded {
            identity,
            created: false,
            sealed: true,
            store: Some(store),
            ticket_secret,
        });
    }
    let (identity, created) = store.load_or_create(None)?;
    let ticket_secret = store.ticket_secret(&identity)?;
    Ok(Loaded {
        identity,
        created,
        sealed: false,
        store: Some(store),
        ticket_secret,
    })
}

/// Tries at a passphrase typed on a terminal.
const PASSPHRASE_TRIES: u32 = 3;

/// Whether [`passphrase`] asks on the terminal (neither a file descriptor nor the
/// environment gives it).
fn asks_terminal(global: &Global) -> bool {
    global.passphrase_fd.is_none() && std::env::var_os(PASSPHRASE_ENV).is_none()
}

/// Reads a passphrase from, in order: `--passphrase-fd`, `EXTRASAFE_PASSPHRASE`, the terminal.
pub fn passphrase(global: &Global, prompt: &str) -> Result<Zeroizing<String>, Failure> {
    if let Some(fd) = global.passphrase_fd {
        let mut f = std::fs::File::open(format!("/proc/self/fd/{fd}")).map_err(|e| {
            Failure::new(
                IDENTITY,
                format!("Cannot read the passphrase from file descriptor {fd}: {e}."),
            )
        })?;
        // Byte by byte into a buffer that is wiped, up to the first newline.
        let mut bytes = Zeroizing::new(Vec::with_capacity(256));
        let mut b = Zeroizing::new([0u8; 1]);
        while bytes.len() < 4096 {
            match f.read(&mut b[..]) {
                Ok(0) => break,
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => bytes.push(b[0]),
                Err(e) => {
                    return Err(Failure::new(
                        IDENTITY,
                        format!("Cannot read the passphrase: {e}."),
                    ))
                }
            }
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Failure::new(IDENTITY, "The passphrase is not valid UTF-8."))?;
        return Ok(Zeroizing::new(text.to_string()));
    }
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(p));
    }
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|_| {
            Failure::new(
                IDENTITY,
                format!(
                "The identity is protected by a passphrase and there is no terminal to ask it on.\n\
                 Set {PASSPHRASE_ENV} or pass --passphrase-fd."
            ),
            )
        })
}

/// A new passphrase: from the script sources if given, else asked twice.
pub fn new_passphrase(global: &Global) -> Result<Zeroizing<String>, Failure> {
    if global.passphrase_fd.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some() {
        let p = passphrase(global, "")?;
        return check_strength(p);
    }
    let first = passphrase(global, "New passphrase: ")?;
    let second = passphrase(global, "Repeat it: ")?;
    if *first != *second {
        return Err(Failure::new(
            IDENTITY,
            "The two passphrases differ; nothing was changed.",
        ));
    }
    check_strength(first)
}

fn check_strength(p: Zeroizing<String>) -> Result<Zeroizing<String>, Failure> {
    if p.chars().count() < 8 {
        return Err(Failure::new(
            IDENTITY,
            "Use a passphrase of at least 8 characters (several words are best); nothing was changed.",
        ));
    }
    Ok(p)
}
