//! `extrasafe contact`: the local, encrypted contact list.

use extrasafe_core::contacts::Added;
use extrasafe_core::{PeerId, Ticket};

use crate::args::{ContactAction, ContactArgs, Global};
use crate::exit::{Failure, USAGE};
use crate::ident;
use crate::output::Output;

pub fn run(global: &Global, args: &ContactArgs, out: Output) -> Result<i32, Failure> {
    if global.ephemeral {
        return Err(Failure::new(
            USAGE,
            "Contacts are kept with your stored identity; run this without --ephemeral.",
        ));
    }
    let loaded = ident::load(global)?;
    let store = loaded.store.as_ref().expect("a stored identity");
    let mut book = store.load_contacts(&loaded.identity)?;
    let usage = |e: extrasafe_core::contacts::ContactsError| {
        let text = e.to_string();
        let mut c = text.chars();
        let first = c.next().map(|f| f.to_uppercase().collect::<String>());
        Failure::new(
            USAGE,
            format!("{}{}.", first.unwrap_or_default(), c.as_str()),
        )
    };
    match &args.action {
        ContactAction::Add {
            target,
            name,
            rename,
        } => {
            let ticket = match target.trim().parse::<Ticket>() {
                Ok(t) => t,
                Err(ticket_err) => match target.trim().parse::<PeerId>() {
                    Ok(peer) => Ticket {
                        peer,
                        secret: None,
                        addrs: Vec::new(),
                    },
                    Err(_) => {
                        return Err(Failure::new(
                            USAGE,
                            format!("That is neither a ticket nor a peer ID: {ticket_err}."),
                        ))
                    }
                },
            };
            let peer = ticket.peer;
            if peer == loaded.identity.peer_id() {
                return Err(Failure::new(USAGE, "That is your own identity."));
            }
            // A known peer under another name is renamed only when asked to: a ticket pasted
            // under the wrong name must not quietly turn "alice" into "bob".
            if let Some(known) = book.known_under_another_name(&peer, name) {
                // (A name another contact has is refused below, rename or not.)
                let free = book.find(name).is_none();
                if free && !rename {
                    let was = extrasafe_core::text::for_display(&known.name);
                    let asked = extrasafe_core::text::for_display(name.trim());
                    let question = format!(
                        "They are already your contact \"{was}\". Rename them \"{asked}\"?"
                    );
                    if !confirm(&question) {
                        return Err(Failure::new(
                            USAGE,
                            format!(
                                "They are already your contact \"{was}\"; nothing was changed. \
                                 To call them \"{asked}\" from now on, add --rename."
                            ),
                        ));
                    }
                    // The list may have changed while we asked (another terminal): apply the
                    // rename to it as it is now.
                    book = store.load_contacts(&loaded.identity)?;
                }
            }
            let known_addrs = ticket.addrs.len();
            let added = book.add_ticket(name, &ticket).map_err(usage)?;
            store.save_contacts(&loaded.identity, &book)?;
            let c = book.by_peer(&peer).expect("just added");
            let human = match &added {
                Added::New if known_addrs == 0 => format!(
                    "Added {} ({}). No address is known yet: add their ticket to be able to call them.",
                    c.name, c.peer
                ),
                Added::New => format!("Added {} ({}).", c.name, c.peer),
                Added::Updated { was } if *was != c.name => {
                    format!("Renamed {was} to {} and updated what is known.", c.name)
                }
                Added::Updated { .. } => format!("Updated {}.", c.name),
            };
            out.emit(
                human,
                serde_json::json!({"event": "contact_saved", "name": c.name,
                    "peer_id": c.peer.to_string(), "new": added == Added::New,
                    "addresses": c.addrs.len(), "verified": c.verified}),
            );
        }
        ContactAction::List => {
            if out.json {
                let list: Vec<_> = book
                    .list()
                    .iter()
                    .map(|c| {
                        serde_json::json!({"name": c.name, "peer_id": c.peer.to_string(),
                            "verified": c.verified,
                            "addresses": c.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>()})
                    })
                    .collect();
                out.emit(
                    "",
                    serde_json::json!({"event": "contacts", "contacts": list}),
                );
            } else if book.list().is_empty() {
                out.hint(
                    "No contacts yet. Add one with `extrasafe contact add TICKET --name NAME`.",
                );
            } else {
                for c in book.list() {
                    let mark = if c.verified {
                        "verified  "
                    } else {
                        "unverified"
                    };
                    let reach = match c.addrs.len() {
                        0 => "no address".to_string(),
                        1 => "1 address".to_string(),
                        n => format!("{n} addresses"),
                    };
                    out.hint(format!("{:<20} {mark}  {}  ({reach})", c.name, c.peer));
                }
            }
        }
        ContactAction::Remove { name } => {
            let c = book.remove(name).map_err(usage)?;
            // A new inbox chain: the removed contact holds the old one, with which it could
            // go on reading our presence (addresses, when online) on the DHT.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            store.renew_inbox(&loaded.identity, extrasafe_core::inbox::inbox_epoch_of(now))?;
            store.save_contacts(&loaded.identity, &book)?;
            out.emit(
                format!(
                    "Removed {}. Nothing else about them was kept, and they can no longer \
                     find you on the DHT. If they have your ticket, it still lets them call \
                     you: `extrasafe id --new-ticket` ends it (your contacts keep reaching you).",
                    c.name
                ),
                serde_json::json!({"event": "contact_removed", "name": c.name,
                    "peer_id": c.peer.to_string()}),
            );
        }
        ContactAction::Verify { name, undo } => {
            let c = book.set_verified(name, !undo).map_err(usage)?.clone();
            store.save_contacts(&loaded.identity, &book)?;
            out.emit(
                if *undo {
                    format!("{} is marked unverified.", c.name)
                } else {
                    format!(
                        "{} is marked verified. Compare the code again if they ever get a new peer ID.",
                        c.name
                    )
                },
                serde_json::json!({"event": "contact_saved", "name": c.name,
                    "peer_id": c.peer.to_string(), "new": false,
                    "addresses": c.addrs.len(), "verified": c.verified}),
            );
        }
    }
    Ok(0)
}

/// Asks a yes/no question on the terminal; `false` when the input is not a terminal (a
/// script gets the refusal and its hint instead).
fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Whom `target` names, for `call` and `send`.
pub struct Target {
    /// A ticket as given, or the addresses last known for a contact (`None`: no address, the
    /// contact must be found on the DHT).
    pub ticket: Option<Ticket>,
    pub peer: PeerId,
    /// Set for a contact.
    pub name: Option<String>,
}

/// Resolves a ticket as given, else a contact by name or peer ID.
pub fn resolve(
    target: &str,
    contacts: impl FnOnce() -> Result<extrasafe_core::contacts::ContactBook, Failure>,
) -> Result<Target, Failure> {
    let ticket_err = match target.trim().parse::<Ticket>() {
        Ok(t) => {
            return Ok(Target {
                peer: t.peer,
                ticket: Some(t),
                name: None,
            })
        }
        Err(e) if target.trim().to_lowercase().starts_with("est1") => {
            return Err(Failure::new(
                USAGE,
                format!("That ticket cannot be used: {e}."),
            ))
        }
        Err(e) => e,
    };
    let book = contacts()?;
    match book.find(target) {
        Some(c) => Ok(Target {
            ticket: c.ticket(),
            peer: c.peer,
            name: Some(c.name.clone()),
        }),
        None if target.trim().parse::<PeerId>().is_ok() => Err(Failure::new(
            USAGE,
            "That peer ID is not one of your contacts, and a peer ID alone has no address: \
             ask for their ticket (est1...).",
        )),
        None => {
            let asked = extrasafe_core::text::for_display(target.trim());
            Err(Failure::new(
                USAGE,
                match book.closest(target) {
                    // A mistyped name: no word about tickets, which it never was.
                    Some(c) => format!(
                        "\"{asked}\" is not one of your contacts. Did you mean \"{}\"? \
                         (`extrasafe contact list` shows them all.)",
                        extrasafe_core::text::for_display(&c.name)
                    ),
                    None => format!(
                        "\"{asked}\" is not one of your contacts (`extrasafe contact list`), \
                         and not a ticket either: {ticket_err}."
                    ),
                },
            ))
        }
    }
}
