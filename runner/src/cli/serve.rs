//! `runner serve` and `runner token add`: the server's front door on the
//! command line; the server itself is `crate::server`.

use super::{EXIT_INVALID, EXIT_OK, ServeArgs, print};
use crate::server::{Config, auth};

pub fn serve(args: &ServeArgs) -> u8 {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            super::report(&e);
            return EXIT_INVALID;
        }
    };
    let service =
        super::exec::service(Some(&args.journal)).with_public_url(config.public_url.as_deref());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::server::Tls {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    match crate::server::serve(config, service, args.listen, tls) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}

pub fn token_add(
    tokens: &std::path::Path,
    principal: &str,
    roles: &[String],
    note: Option<&str>,
) -> u8 {
    match auth::add(tokens, principal, roles, note) {
        Ok(token) => {
            print(&format!("{token}\n"));
            eprintln!(
                "token for `{principal}` (roles: {}) added to {}; it is shown only this once",
                if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.join(", ")
                },
                tokens.display()
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}
