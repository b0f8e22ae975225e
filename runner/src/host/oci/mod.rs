//! Plugins from OCI registries: `uses: oci://REGISTRY/REPO:TAG@sha256:DIGEST`,
//! `runner plugins push FILE REF` and `runner plugins pull REF`.
//!
//! Why a registry: teams already run one (for images), with access control,
//! retention and replication; a plugin published there is found by name and
//! fetched by content. The artifact follows the CNCF TAG Runtime "Wasm OCI
//! Artifact layout" (as wasmCloud, `wkg` and Spin write it): an OCI image
//! manifest whose config has the media type `application/vnd.wasm.config.v0+json`
//! and whose one layer, `application/wasm`, is the component.
//!
//! Threat model: the registry, and the network to it, are not trusted with
//! what runs. A run takes only references pinned by the manifest's digest; the
//! manifest is hashed and compared with the pin, and the component with the
//! digest the manifest gives, before anything is compiled; a mismatch refuses
//! the run before its first step (exit 2), naming both digests. Registries are
//! reached over HTTPS (certificates checked against the system's roots), except
//! a registry on this machine (`localhost`, `127.0.0.0/8`, `[::1]`), which
//! speaks plain HTTP the way a test registry does. What was fetched is kept in
//! a content-addressed folder ([`store`]) and used from there afterwards, with
//! no network, so a run in an emergency does not depend on the registry being
//! up. Registry credentials ([`credentials`]) stay in this module: never in a
//! plugin's sandbox, never in an error, a log line, the journal or a report.

pub mod credentials;
pub mod store;

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

pub use crate::oci_ref::{Digest, OciRef, SCHEME};
use store::BlobStore;

/// The manifest's media type (an OCI image manifest).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type in the Wasm OCI artifact layout.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The one layer's media type: the component itself.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Docker's schema 2 manifest, which some registries convert OCI manifests to.
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The largest component the runner fetches (the Python interpreter
/// components are about 20 MiB).
pub const MAX_COMPONENT_BYTES: u64 = 512 << 20;
/// The largest manifest the runner reads; registries refuse over 4 MiB.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// What can go wrong with a registry; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Reference(String),
    #[error(
        "`{reference}` is not pinned by digest; a run takes only `oci://REGISTRY/REPO:TAG@sha256:DIGEST`: `runner plugins pull {reference}` prints the digest to add"
    )]
    NotPinned { reference: String },
    #[error(
        "the {what} of `{reference}` does not match its digest: expected {expected}, got {actual}; the registry (or something between it and the runner) serves other bytes than were pinned, so nothing was run: find out why before trusting this registry, and pin again only a digest you pulled from one you trust"
    )]
    DigestMismatch {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("registry `{registry}` refused {who}: {hint}")]
    Unauthorized {
        registry: String,
        who: String,
        hint: String,
    },
    #[error(
        "`{reference}` is not in the registry ({detail}); check the repository, tag and digest, for example with `runner plugins pull` and the tag"
    )]
    NotFound { reference: String, detail: String },
    #[error(
        "cannot reach registry `{registry}` at {url}: {detail}; is it up, and is the address right? (a registry that is not on this machine is reached over HTTPS only)"
    )]
    Unreachable {
        registry: String,
        url: String,
        detail: String,
    },
    #[error("`{reference}` is not a WebAssembly component artifact: {why}")]
    NotAComponent { reference: String, why: String },
    #[error("{0}")]
    Credentials(String),
    #[error(
        "cannot keep the download in {path}: {why}; make the cache folder writable (RUNNER_CACHE_DIR)"
    )]
    Cache { path: PathBuf, why: String },
    #[error("registry `{registry}`: {detail}")]
    Registry { registry: String, detail: String },
    #[error("{file} cannot be pushed, the runner would refuse it:\n  {}\n(`runner plugins check {file}` shows the details)", problems.join("\n  "))]
    Refused { file: String, problems: Vec<String> },
}

/// A component fetched (or found in the store) and verified.
#[derive(Debug)]
pub struct Fetched {
    /// The reference, pinned to the manifest's digest.
    pub reference: OciRef,
    pub manifest_digest: Digest,
    pub layer_digest: Digest,
    pub wasm: Vec<u8>,
    /// Taken from the store, without asking the registry.
    pub from_store: bool,
    /// Where the component is kept, when there is a store.
    pub path: Option<PathBuf>,
}

/// What a push published.
#[derive(Debug)]
pub struct Pushed {
    /// The reference pinned to the new manifest: what `uses:` takes.
    pub reference: OciRef,
    pub manifest_digest: Digest,
    pub layer_digest: Digest,
    pub bytes: usize,
}

/// The component that `reference` pins, from `store` when it is there, else
/// from the registry (then kept in `store`). Refuses an unpinned reference.
pub async fn fetch(reference: &OciRef, store: Option<&BlobStore>) -> Result<Fetched, OciError> {
    let Some(pin) = reference.digest.clone() else {
        return Err(OciError::NotPinned {
            reference: reference.to_string(),
        });
    };
    if let Some(store) = store
        && let Some(manifest) = store.get(&pin)
    {
        let layer = layer_of(reference, &manifest)?;
        if let Some(wasm) = store.get(&layer) {
            return Ok(Fetched {
                reference: reference.clone(),
                manifest_digest: pin,
                path: Some(store.path(&layer)),
                layer_digest: layer,
                wasm,
                from_store: true,
            });
        }
    }
    download(reference, store).await
}

/// The component `reference` names, by tag or by digest, always from the
/// registry (kept in `store`): what `runner plugins pull` does, to learn the
/// digest to pin.
pub async fn pull(reference: &OciRef, store: Option<&BlobStore>) -> Result<Fetched, OciError> {
    download(reference, store).await
}

async fn download(reference: &OciRef, store: Option<&BlobStore>) -> Result<Fetched, OciError> {
    let registry = Registry::connect(reference).await?;
    let client_ref = reference.client_reference();
    let (body, _) = registry
        .client
        .pull_manifest_raw(
            &client_ref,
            &registry.auth,
            &[MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE],
        )
        .await
        .map_err(|e| registry.error(e, reference, "manifest", "pull from"))?;
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(OciError::NotAComponent {
            reference: reference.to_string(),
            why: format!(
                "its manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                body.len()
            ),
        });
    }
    let manifest_digest = Digest::of(&body);
    if let Some(pin) = &reference.digest
        && *pin != manifest_digest
    {
        return Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            what: "manifest",
            expected: pin.to_string(),
            actual: manifest_digest.to_string(),
        });
    }
    let pinned = reference.pinned(manifest_digest.clone());
    let layer = layer_of(&pinned, &body)?;
    let mut out = Capped {
        buf: Vec::new(),
        max: MAX_COMPONENT_BYTES as usize,
        over: false,
    };
    let pulled = registry
        .client
        .pull_blob(&client_ref, layer.to_string().as_str(), &mut out)
        .await;
    if out.over {
        return Err(OciError::NotAComponent {
            reference: pinned.to_string(),
            why: format!("its component is larger than {MAX_COMPONENT_BYTES} bytes"),
        });
    }
    pulled.map_err(|e| registry.error(e, &pinned, "component layer", "pull from"))?;
    let wasm = out.buf;
    let actual = Digest::of(&wasm);
    if actual != layer {
        return Err(OciError::DigestMismatch {
            reference: pinned.to_string(),
            what: "component layer",
            expected: layer.to_string(),
            actual: actual.to_string(),
        });
    }
    let mut path = None;
    if let Some(store) = store {
        // The component first: a manifest in the store promises its layer.
        let kept = store.put(&wasm).and_then(|p| store.put(&body).map(|_| p));
        match kept {
            Ok(p) => path = Some(p),
            Err(e) => {
                return Err(OciError::Cache {
                    path: store.path(&manifest_digest),
                    why: e.to_string(),
                });
            }
        }
    }
    Ok(Fetched {
        reference: pinned,
        manifest_digest,
        layer_digest: layer,
        wasm,
        from_store: false,
        path,
    })
}

/// Publishes `wasm` as `reference` (which must have a tag and no digest),
/// after checking that this runner can load it. `file` names it in errors.
pub async fn push(
    runtime: &crate::host::runtime::Runtime,
    file: &str,
    wasm: &[u8],
    reference: &OciRef,
) -> Result<Pushed, OciError> {
    if reference.digest.is_some() {
        return Err(OciError::Reference(format!(
            "`{reference}` has a digest; push to a tag (`{}`): the digest is what the push prints",
            reference.unpinned()
        )));
    }
    if reference.tag.is_none() {
        return Err(OciError::Reference(format!(
            "`{reference}` has no tag; push to `{reference}:VERSION` (for example `:1.0.0`)"
        )));
    }
    let report = crate::host::check::check(runtime, wasm).await;
    if !report.ok() {
        return Err(OciError::Refused {
            file: file.to_owned(),
            problems: report.problems,
        });
    }
    let layer_digest = Digest::of(wasm);
    let config = serde_json::json!({
        "created": created(),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest.to_string()],
        "component": {
            "exports": report.exports,
            "imports": report.imports.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            "target": serde_json::Value::Null,
        },
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest.to_string(),
            "size": wasm.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = Digest::of(&manifest);

    let registry = Registry::connect(reference).await?;
    let target = reference.client_reference();
    let fail = |e| registry.error(e, reference, "upload", "push to");
    registry
        .client
        .push_blob(&target, wasm.to_vec(), &layer_digest.to_string())
        .await
        .map_err(fail)?;
    registry
        .client
        .push_blob(&target, config, &config_digest.to_string())
        .await
        .map_err(fail)?;
    registry
        .client
        .push_manifest_raw(
            &target,
            manifest,
            http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
        )
        .await
        .map_err(fail)?;
    Ok(Pushed {
        reference: reference.pinned(manifest_digest.clone()),
        manifest_digest,
        layer_digest,
        bytes: wasm.len(),
    })
}

/// The config's `created`: `SOURCE_DATE_EPOCH` when set (reproducible
/// builds: the same file pushed twice gets the same digest), else now.
fn created() -> String {
    let at = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(std::time::SystemTime::now, |s| {
            std::time::UNIX_EPOCH + Duration::from_secs(s)
        });
    crate::clock::rfc3339(at)
}

/// The digest of the one component layer that the manifest `body` lists,
/// once the manifest is checked to be a Wasm component artifact.
fn layer_of(reference: &OciRef, body: &[u8]) -> Result<Digest, OciError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Descriptor {
        media_type: String,
        digest: String,
        #[serde(default)]
        size: i64,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        #[serde(default)]
        media_type: Option<String>,
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        manifests: Option<serde_json::Value>,
    }
    let not = |why: String| OciError::NotAComponent {
        reference: reference.to_string(),
        why,
    };
    let m: Manifest = serde_json::from_slice(body)
        .map_err(|e| not(format!("its manifest cannot be read ({e})")))?;
    if m.manifests.is_some() {
        return Err(not(
            "it is an index of several images (a multi-platform image), not one component".into(),
        ));
    }
    if let Some(t) = m.media_type.as_deref()
        && t != MANIFEST_MEDIA_TYPE
        && t != DOCKER_MANIFEST_MEDIA_TYPE
    {
        return Err(not(format!(
            "its manifest has the media type `{t}`, not `{MANIFEST_MEDIA_TYPE}`"
        )));
    }
    let config = m.config.map(|c| c.media_type).unwrap_or_default();
    if config != CONFIG_MEDIA_TYPE {
        return Err(not(format!(
            "its config has the media type `{config}`, not `{CONFIG_MEDIA_TYPE}` (the Wasm OCI artifact layout); publish the component with `runner plugins push`, `wkg oci push` or `wash push`"
        )));
    }
    let [layer] = m.layers.as_slice() else {
        return Err(not(format!(
            "it has {} layers; a component artifact has exactly one, of media type `{LAYER_MEDIA_TYPE}`",
            m.layers.len()
        )));
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(not(format!(
            "its layer has the media type `{}`, not `{LAYER_MEDIA_TYPE}`",
            layer.media_type
        )));
    }
    if !(0..=MAX_COMPONENT_BYTES as i64).contains(&layer.size) {
        return Err(not(format!(
            "its component is {} bytes, more than the {MAX_COMPONENT_BYTES} the runner fetches",
            layer.size
        )));
    }
    Digest::parse(&layer.digest).map_err(|e| not(format!("its layer's digest: {e}")))
}

/// A connection to one registry, with the credentials for it.
struct Registry {
    client: oci_client::Client,
    auth: RegistryAuth,
    name: String,
    credential: Option<credentials::Credential>,
    /// Where the credentials would have come from, and a helper that was not run.
    config: (Option<PathBuf>, Option<String>),
    scheme: &'static str,
}

impl Registry {
    async fn connect(reference: &OciRef) -> Result<Registry, OciError> {
        // reqwest is built without a default TLS provider: the runner's is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let name = reference.registry.clone();
        let (scheme, protocol) = if reference.is_loopback() {
            (
                "http",
                oci_client::client::ClientProtocol::HttpsExcept(vec![name.clone()]),
            )
        } else {
            ("https", oci_client::client::ClientProtocol::Https)
        };
        let config = oci_client::client::ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("runner/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| OciError::Registry {
            registry: name.clone(),
            detail: format!("cannot set up the HTTP client: {e}"),
        })?;
        let (credential, config) =
            match credentials::lookup(&name).map_err(OciError::Credentials)? {
                credentials::Lookup::Found(c) => (Some(c), (None, None)),
                credentials::Lookup::None { file, helper } => (None, (file, helper)),
            };
        let auth = credential
            .as_ref()
            .map_or(RegistryAuth::Anonymous, credentials::Credential::auth);
        client.store_auth_if_needed(&name, &auth).await;
        Ok(Registry {
            client,
            auth,
            name,
            credential,
            config,
            scheme,
        })
    }

    /// `text` without the credentials.
    fn redact(&self, text: &str) -> String {
        match &self.credential {
            Some(c) => c.redact(text),
            None => text.to_owned(),
        }
    }

    /// An error of the OCI client as one of ours, redacted.
    fn error(
        &self,
        e: OciDistributionError,
        reference: &OciRef,
        what: &'static str,
        action: &str,
    ) -> OciError {
        use OciDistributionError as E;
        let denied = match &e {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => true,
            E::ServerError { code, .. } => *code == 401 || *code == 403,
            E::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
            _ => false,
        };
        if denied {
            return self.unauthorized(reference, action);
        }
        let not_found = match &e {
            E::ImageManifestNotFoundError(_) => true,
            E::ServerError { code, .. } => *code == 404,
            E::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }),
            _ => false,
        };
        if not_found {
            return OciError::NotFound {
                reference: reference.to_string(),
                detail: self.redact(&messages(&e)),
            };
        }
        match e {
            E::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => OciError::DigestMismatch {
                reference: reference.to_string(),
                what,
                expected,
                actual,
            },
            E::RequestError(r) if r.is_connect() || r.is_timeout() => OciError::Unreachable {
                registry: self.name.clone(),
                url: format!("{}://{}", self.scheme, self.name),
                detail: self.redact(&chain(&r)),
            },
            other => OciError::Registry {
                registry: self.name.clone(),
                detail: format!("cannot {action} it: {}", self.redact(&messages(&other))),
            },
        }
    }

    fn unauthorized(&self, reference: &OciRef, action: &str) -> OciError {
        let login = format!("`docker login {}`", self.name);
        match &self.credential {
            Some(c) => OciError::Unauthorized {
                registry: self.name.clone(),
                who: c.to_string(),
                hint: format!(
                    "the user or password is wrong, or the user may not {action} `{}`; run {login} (or fix `auths.\"{}\".auth` in {})",
                    reference.repository,
                    self.name,
                    c.source.display()
                ),
            },
            None => {
                let (file, helper) = &self.config;
                let file = file.clone().or_else(credentials::config_path).map_or_else(
                    || "$DOCKER_CONFIG/config.json".to_owned(),
                    |p| p.display().to_string(),
                );
                let helper = helper
                    .as_deref()
                    .map(|h| format!(" ({file} names the credential helper `{h}`, which the runner does not run: put the entry in `auths`)"))
                    .unwrap_or_default();
                OciError::Unauthorized {
                    registry: self.name.clone(),
                    who: "anonymous access".into(),
                    hint: format!(
                        "it wants credentials and {file} has none for it; run {login}, or add `auths.\"{}\".auth` (the base64 of `user:password`) to that file{helper}",
                        self.name
                    ),
                }
            }
        }
    }
}

/// The error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// What a registry said, without the client's wrapping.
fn messages(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|x| {
                if x.message.is_empty() {
                    format!("{:?}", x.code)
                } else {
                    x.message.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => chain(other),
    }
}

/// An in-memory sink that refuses more than `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
    over: bool,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > self.max {
            self.over = true;
            return Poll::Ready(Err(std::io::Error::other("component too large")));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> OciRef {
        OciRef::parse("oci://127.0.0.1:5000/echo:1").expect("valid")
    }

    fn manifest(config: &str, layers: &[(&str, &str)]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|(t, d)| serde_json::json!({"mediaType": t, "digest": d, "size": 3}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": config, "digest": Digest::of(b"{}").to_string(), "size": 2},
            "layers": layers,
        }))
        .expect("json")
    }

    #[test]
    fn the_component_layer_of_a_wasm_artifact_is_found() {
        let d = Digest::of(b"abc").to_string();
        let body = manifest(CONFIG_MEDIA_TYPE, &[(LAYER_MEDIA_TYPE, &d)]);
        assert_eq!(layer_of(&reference(), &body).expect("ok").to_string(), d);
    }

    #[test]
    fn other_artifacts_are_refused_with_the_reason() {
        let d = Digest::of(b"abc").to_string();
        for (body, says) in [
            (
                manifest(
                    "application/vnd.oci.image.config.v1+json",
                    &[(LAYER_MEDIA_TYPE, &d)],
                ),
                "config has the media type",
            ),
            (manifest(CONFIG_MEDIA_TYPE, &[]), "0 layers"),
            (
                manifest(
                    CONFIG_MEDIA_TYPE,
                    &[(LAYER_MEDIA_TYPE, &d), (LAYER_MEDIA_TYPE, &d)],
                ),
                "2 layers",
            ),
            (
                manifest(
                    CONFIG_MEDIA_TYPE,
                    &[("application/vnd.oci.image.layer.v1.tar+gzip", &d)],
                ),
                "layer has the media type",
            ),
            (br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(), "index"),
            (b"not json".to_vec(), "cannot be read"),
        ] {
            let e = layer_of(&reference(), &body).expect_err(says).to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[tokio::test]
    async fn an_unpinned_reference_is_never_fetched() {
        let e = fetch(&reference(), None).await.expect_err("unpinned");
        assert!(e.to_string().contains("runner plugins pull"), "{e}");
    }
}
