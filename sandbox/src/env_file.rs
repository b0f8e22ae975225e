//! The environment file (`runner exec PLAYBOOK --env FILE`) and the secrets file the
//! sandbox writes for it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the environment file describes.
pub struct Environment<'a> {
    pub kubeconfig: &'a Path,
    pub secrets_file: &'a Path,
    pub service: &'a str,
    pub namespace: &'a str,
    pub staging_namespace: &'a str,
    pub production_url: &'a str,
    pub staging_url: &'a str,
    pub prometheus_url: Option<&'a str>,
    pub git_remote: &'a Path,
    pub git_dir: &'a Path,
    pub base_tag: &'a str,
    pub fixed_image: &'a str,
    /// `127.0.0.1:PORT`
    pub smtp_server: &'a str,
    /// `http://127.0.0.1:PORT`, the notification sink's base URL.
    pub notify_url: &'a str,
}

impl Environment<'_> {
    pub fn yaml(&self) -> String {
        let path = |p: &Path| scalar(&p.display().to_string());
        let mut y = String::from(
            "# written by runner-sandbox; point a playbook at it with --env\n\
             # (valid while the sandbox that wrote it runs)\n",
        );
        let _ = writeln!(y, "kube_context: {}", crate::control_plane::CONTEXT);
        let _ = writeln!(y, "kubeconfig: {}", path(self.kubeconfig));
        let _ = writeln!(y, "secrets_file: {}", path(self.secrets_file));
        y.push_str("inputs:\n");
        let mut inputs = vec![
            ("service", scalar(self.service)),
            ("namespace", scalar(self.namespace)),
            ("staging_namespace", scalar(self.staging_namespace)),
            ("production_url", scalar(self.production_url)),
            ("staging_url", scalar(self.staging_url)),
        ];
        if let Some(url) = self.prometheus_url {
            inputs.push(("prometheus_url", scalar(url)));
        }
        inputs.extend([
            ("git_remote", path(self.git_remote)),
            ("base_tag", scalar(self.base_tag)),
            ("fixed_image", scalar(self.fixed_image)),
            ("smtp_server", scalar(self.smtp_server)),
        ]);
        // A rehearsal runs in minutes: short watch windows and load tests. The
        // sandbox has no npm registry, so no `npm audit`.
        for (k, v) in [
            ("npm_audit", "false"),
            ("load_rate", "20"),
            ("load_duration", "10s"),
            ("smoke_window", "10s"),
            ("first_window", "20s"),
            ("step_window", "10s"),
            ("canary_window", "20s"),
            ("final_window", "10s"),
            ("stability_window", "20s"),
            ("stability_interval", "5s"),
            ("metrics_interval", "5s"),
            ("health_interval", "2s"),
        ] {
            inputs.push((k, v.to_owned()));
        }
        for (k, v) in inputs {
            let _ = writeln!(y, "  {k}: {v}");
        }
        let fronts = format!(
            "[{}, {}]",
            quoted(self.production_url),
            quoted(self.staging_url)
        );
        y.push_str("grants:            # added to the playbook's plugin grants, by plugin name\n");
        let _ = writeln!(y, "  http_check: {{ http: {fronts} }}");
        let _ = writeln!(y, "  load_test:  {{ http: {fronts} }}");
        if let Some(url) = self.prometheus_url {
            let _ = writeln!(y, "  prom:       {{ http: [{}] }}", quoted(url));
        }
        let _ = writeln!(
            y,
            "  notify:     {{ http: [{}], tcp: [{}] }}",
            quoted(self.notify_url),
            quoted(self.smtp_server)
        );
        let _ = writeln!(
            y,
            "  git:        {{ fs: [{{ path: {}, access: rw }}] }}",
            quoted(&self.git_dir.display().to_string())
        );
        // Where URL and image inputs may point: a `-i` value naming another
        // origin or registry is refused before the run.
        y.push_str("allow:             # where url and image-ref inputs may point here\n");
        let _ = writeln!(y, "  production_url: [{}]", quoted(self.production_url));
        let _ = writeln!(y, "  staging_url:    [{}]", quoted(self.staging_url));
        if let Some(url) = self.prometheus_url {
            let _ = writeln!(y, "  prometheus_url: [{}]", quoted(url));
        }
        let repository = repository(self.fixed_image);
        let _ = writeln!(y, "  fixed_image:    [{}]", quoted(repository));
        let _ = writeln!(y, "  image:          [{}]", quoted(repository));
        y
    }
}

/// `demo/shop` of `demo/shop:1.4.3`: the image without its tag or digest.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].find(':') {
        Some(colon) => &image[..last + colon],
        None => image,
    }
}

/// The secrets file: webhook URLs of the notification sink and the SMTP credentials.
pub fn secrets(notify_url: &str, smtp_server: &str, smtp_password: &str) -> String {
    format!(
        "# written by runner-sandbox: where notifications go in the sandbox\n\
         SLACK_WEBHOOK={notify_url}/slack\n\
         WEBHOOK_URL={notify_url}/webhook\n\
         INCIDENT_WEBHOOK={notify_url}/webhook\n\
         SMTP_PASSWORD={smtp_password}\n\
         SMTP_URL=smtp://sandbox:{smtp_password}@{smtp_server}\n"
    )
}

/// Writes `text` to `path` with mode 0600, replacing it atomically.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        path.with_file_name(name)
    };
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted
/// (JSON's escapes are YAML's).
fn scalar(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
        && !s.contains(": ");
    if safe { s.to_owned() } else { quoted(s) }
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_plain_only_when_safe() {
        assert_eq!(scalar("shop"), "shop");
        assert_eq!(scalar("v1.4.2"), "v1.4.2");
        assert_eq!(scalar("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(scalar("/tmp/x y"), "\"/tmp/x y\"");
        assert_eq!(scalar("1.4"), "\"1.4\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("127.0.0.1:2525"), "\"127.0.0.1:2525\"");
        assert_eq!(scalar("demo/shop:1.4.3"), "demo/shop:1.4.3");
        assert_eq!(scalar("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn the_file_has_the_agreed_shape() {
        let env = Environment {
            kubeconfig: Path::new("/s/kubeconfig"),
            secrets_file: Path::new("/s/secrets.env"),
            service: "shop",
            namespace: "production",
            staging_namespace: "staging",
            production_url: "http://127.0.0.1:1",
            staging_url: "http://127.0.0.1:2",
            prometheus_url: Some("http://127.0.0.1:3"),
            git_remote: Path::new("/s/git/shop.git"),
            git_dir: Path::new("/s/git"),
            base_tag: "v1.4.2",
            fixed_image: "demo/shop:1.4.3",
            smtp_server: "127.0.0.1:4",
            notify_url: "http://127.0.0.1:5",
        };
        let text = env.yaml();
        for line in [
            "kube_context: sandbox",
            "kubeconfig: /s/kubeconfig",
            "secrets_file: /s/secrets.env",
            "inputs:",
            "  service: shop",
            "  namespace: production",
            "  staging_namespace: staging",
            "  production_url: http://127.0.0.1:1",
            "  staging_url: http://127.0.0.1:2",
            "  prometheus_url: http://127.0.0.1:3",
            "  git_remote: /s/git/shop.git",
            "  base_tag: v1.4.2",
            "  fixed_image: demo/shop:1.4.3",
            "  smtp_server: \"127.0.0.1:4\"",
            "  http_check: { http: [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"] }",
            "  load_test:  { http: [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"] }",
            "  prom:       { http: [\"http://127.0.0.1:3\"] }",
            "  notify:     { http: [\"http://127.0.0.1:5\"], tcp: [\"127.0.0.1:4\"] }",
            "  git:        { fs: [{ path: \"/s/git\", access: rw }] }",
            "allow:             # where url and image-ref inputs may point here",
            "  production_url: [\"http://127.0.0.1:1\"]",
            "  fixed_image:    [\"demo/shop\"]",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        let without = Environment {
            prometheus_url: None,
            ..env
        };
        assert!(!without.yaml().contains("prom"));
    }

    #[test]
    fn the_repository_of_an_image_drops_tag_and_digest() {
        assert_eq!(repository("demo/shop:1.4.3"), "demo/shop");
        assert_eq!(
            repository("registry:5000/team/shop:v1"),
            "registry:5000/team/shop"
        );
        assert_eq!(repository("shop@sha256:abc"), "shop");
        assert_eq!(repository("registry:5000/shop"), "registry:5000/shop");
    }
}
