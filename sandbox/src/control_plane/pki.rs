//! The control plane's credentials: a CA, the apiserver's serving certificate, a
//! service-account signing key (all made with openssl), an admin bearer token, and
//! the kubeconfig that carries them.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use super::{CONTEXT, OTHER_CONTEXT, READER_CONTEXT};

/// A CA, a serving certificate for 127.0.0.1/localhost signed by it (not itself a CA:
/// webpki refuses CA certificates as end-entity certificates) and a service-account
/// signing key, made with openssl in `dir`.
pub struct Pki {
    pub ca_pem: String,
}

impl Pki {
    pub fn generate(dir: &Path) -> Result<Pki, String> {
        let ext = "basicConstraints=critical,CA:FALSE\n\
                   keyUsage=critical,digitalSignature,keyEncipherment\n\
                   extendedKeyUsage=serverAuth\n\
                   subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        fs::write(dir.join("server.ext"), ext).map_err(|e| e.to_string())?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            dir,
            &[
                &["req", "-x509", "-nodes"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=runner-test-ca",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        )?;
        openssl(
            dir,
            &[
                &["req", "-nodes"],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=kube-apiserver",
                ],
            ]
            .concat(),
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3650",
                "-out",
                "server.crt",
                "-extfile",
                "server.ext",
            ],
        )?;
        openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
        openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        let ca_pem = fs::read_to_string(dir.join("ca.crt")).map_err(|e| e.to_string())?;
        Ok(Pki { ca_pem })
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

pub fn kubeconfig_yaml(server_url: &str, ca_pem: &str, token: &str, reader_token: &str) -> String {
    let ca = base64(ca_pem.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
- name: {OTHER_CONTEXT}
  cluster:
    server: https://127.0.0.1:1
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
- name: {READER_CONTEXT}
  user:
    token: {reader_token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: admin
    namespace: default
- name: {OTHER_CONTEXT}
  context:
    cluster: {OTHER_CONTEXT}
    user: admin
    namespace: default
- name: {READER_CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {READER_CONTEXT}
    namespace: default
current-context: {CONTEXT}
"
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    io::Read::read_exact(
        &mut fs::File::open("/dev/urandom").map_err(|e| e.to_string())?,
        &mut buf,
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
