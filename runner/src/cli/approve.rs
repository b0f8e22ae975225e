//! `runner approve`: answers a run that waits for a manual approval, from any shell
//! or CI job on the machine (see [`crate::engine::approval`]).

use super::{ApproveArgs, EXIT_INVALID, EXIT_OK, print};
use crate::engine::approval::{Decision, submit};

/// Records the decision; 0 with a one-line confirmation, 2 with the reason.
pub fn approve(args: &ApproveArgs) -> u8 {
    if let Some(server) = &args.server {
        return match remote(args, server) {
            Ok(line) => {
                print(&line);
                EXIT_OK
            }
            Err(message) => {
                eprintln!("{message}");
                EXIT_INVALID
            }
        };
    }
    let service = super::exec::service(Some(&super::JournalArg {
        journal: None,
        database: args.database.clone(),
    }));
    let approvals = if service.settings().database.is_some() {
        match service.shared_approvals() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    } else {
        let Some(approvals) = service.approvals() else {
            eprintln!(
                "no state directory to look for the run's approvals in; set RUNNER_STATE_DIR to an absolute path (or HOME) as for the run"
            );
            return EXIT_INVALID;
        };
        approvals
    };
    let decision = Decision::now(
        !args.reject,
        &crate::identity::current(args.actor.as_deref()),
        args.role.clone(),
        args.comment.clone().filter(|c| !c.trim().is_empty()),
        "command",
    );
    let confirmation = format!(
        "step `{}` of run `{}`: {}\n",
        args.step,
        args.run_id,
        decision.describe()
    );
    match submit(&*approvals, &args.run_id, &args.step, decision) {
        Ok(()) => {
            print(&confirmation);
            EXIT_OK
        }
        Err(message) => {
            eprintln!("{message}");
            EXIT_INVALID
        }
    }
}

/// The decision sent to `runner serve` at `server` with the token in
/// RUNNER_TOKEN; the confirmation line, or the server's reason.
fn remote(args: &ApproveArgs, server: &str) -> Result<String, String> {
    let token = std::env::var("RUNNER_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or(
            "set RUNNER_TOKEN to your API token for the server (made with `runner token add`)",
        )?;
    let mut url =
        url::Url::parse(server).map_err(|e| format!("--server `{server}` is not a URL: {e}"))?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "--server must be http:// or https://, not {other}://"
            ));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("--server `{server}` names no host"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    url.path_segments_mut()
        .map_err(|_| format!("--server `{server}` cannot take a path"))?
        .pop_if_empty()
        .extend(["api", "v1", "runs", &args.run_id, "approvals", &args.step]);
    let body = serde_json::json!({
        "decision": if args.reject { "reject" } else { "approve" },
        "comment": args.comment,
        "role": args.role,
    });
    let mut body = body;
    if let Some(map) = body.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    let tls = if https {
        Some(client_tls(args.server_ca.as_deref())?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (status, text) = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            post(&host, port, tls, &url, token.trim(), body.to_string()),
        )
        .await
        .map_err(|_| format!("{server} did not answer within 30 s"))?
    })?;
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status != 200 {
        let reason = reply["error"].as_str().unwrap_or(text.trim());
        return Err(format!("{server} refused ({status}): {reason}"));
    }
    let decision: Decision = serde_json::from_value(reply["decision"].clone())
        .map_err(|e| format!("{server} answered something else than a decision: {e}"))?;
    Ok(format!(
        "step `{}` of run `{}`: {}\n",
        args.step,
        args.run_id,
        decision.describe()
    ))
}

fn client_tls(ca: Option<&std::path::Path>) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read --server-ca `{}`: {e}", ca.display()))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("--server-ca `{}`: {e}", ca.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

async fn post(
    host: &str,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    url: &url::Url,
    token: &str,
    body: String,
) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot reach {host}:{port}: {e}"))?;
    let request = http::Request::post(url.path())
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    match tls {
        None => send(hyper_util::rt::TokioIo::new(tcp), request).await,
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| format!("`{host}` is not a server name: {e}"))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
            send(hyper_util::rt::TokioIo::new(stream), request).await
        }
    }
}

async fn send<T>(
    io: T,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<(u16, String), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the request failed: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    // A bounded answer: a decision, or an error message.
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into_owned();
    Ok((status, text))
}
