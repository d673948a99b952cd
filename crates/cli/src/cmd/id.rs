//! `extrasafe id`

use std::net::SocketAddr;

use extrasafe_core::Ticket;

use crate::args::{Global, IdArgs};
use crate::exit::{Failure, USAGE};
use crate::ident;
use crate::output::Output;

pub fn run(global: &Global, args: &IdArgs, out: Output) -> Result<i32, Failure> {
    if global.ephemeral && (args.set_passphrase || args.remove_passphrase) {
        return Err(Failure::new(
            USAGE,
            "An ephemeral identity is never stored; there is nothing to protect.",
        ));
    }
    // A passphrase asked for on first use protects the key from its first byte on disk.
    if args.set_passphrase && !global.ephemeral {
        let store = ident::store(global)?;
        if !store.exists() {
            let pass = ident::new_passphrase(global)?;
            store.save(&extrasafe_net::new_identity(), Some(pass.as_bytes()))?;
            out.hint("Created a new identity, encrypted with your passphrase.");
        }
    }
    if global.ephemeral && args.new_ticket {
        return Err(Failure::new(
            USAGE,
            "An ephemeral identity gets a new ticket every time already.",
        ));
    }
    let mut loaded = ident::load(global)?;
    if args.new_ticket {
        let store = loaded.store.as_ref().expect("not ephemeral");
        loaded.ticket_secret = store.new_ticket(&loaded.identity)?;
        out.hint(
            "Made a new ticket. Tickets you gave out before no longer reach you (whoever holds one \
             gets no answer at all); your contacts still do. Restart `extrasafe listen` to use it.",
        );
    }
    let mut sealed = loaded.sealed;
    if let Some(store) = &loaded.store {
        if args.set_passphrase {
            let pass = ident::new_passphrase(global)?;
            store.save(&loaded.identity, Some(pass.as_bytes()))?;
            sealed = true;
            out.hint("The key file is now encrypted with your passphrase. Forget it and the identity is lost.");
        } else if args.remove_passphrase && sealed {
            store.save(&loaded.identity, None)?;
            sealed = false;
            out.hint(
                "Passphrase removed; the key file is protected by its permissions (0600) only.",
            );
        }
    }
    let port = args
        .port
        .unwrap_or_else(|| extrasafe_core::access::listening_port(&loaded.identity));
    let ticket = Ticket {
        peer: loaded.identity.peer_id(),
        secret: Some(loaded.ticket_secret.clone()),
        addrs: extrasafe_net::reachable_addrs(SocketAddr::from((
            std::net::Ipv6Addr::UNSPECIFIED,
            port,
        ))),
    };
    out.identity(&ticket.peer, &ticket, loaded.created, sealed, "identity");
    if let Some(store) = &loaded.store {
        out.hint(format!("Key file: {}", store.key_path().display()));
    }
    if args.qr {
        out.qr(&ticket);
    }
    out.hint(format!(
        "Share the ticket only with people who should reach you (it is what lets them ring \
         you: strangers get no answer at all), then run `extrasafe listen{}`.",
        match args.port {
            None => String::new(),
            Some(p) => format!(" --port {p}"),
        }
    ));
    Ok(0)
}
