//! Where the cluster's credentials are on this machine, so that no folder
//! grant hands them to a plugin: plugins reach the cluster through `grants.kube`,
//! never through the kubeconfig.

/// Files holding Kubernetes credentials on this machine: the kubeconfig files
/// (`KUBECONFIG`, else `~/.kube/config`) and the pod's service-account folder.
pub fn credential_paths() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<std::path::PathBuf> = match std::env::var_os("KUBECONFIG") {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => std::env::var_os("HOME")
            .map(|h| vec![std::path::Path::new(&h).join(".kube/config")])
            .unwrap_or_default(),
    };
    paths.push("/var/run/secrets/kubernetes.io/serviceaccount".into());
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect()
}

/// Refuses a folder grant that would let a plugin read cluster credentials:
/// the folder, or anything in it, is one of `credentials`.
pub fn check_fs_grant(
    plugin: &str,
    folder: &std::path::Path,
    credentials: &[std::path::PathBuf],
) -> Result<(), String> {
    let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    match credentials.iter().find(|c| c.starts_with(&folder)) {
        Some(c) => Err(format!(
            "plugin `{plugin}` is granted the folder `{}`, which holds the Kubernetes credentials `{}`; grant a narrower folder (plugins reach the cluster through `grants.kube`, never through the kubeconfig)",
            folder.display(),
            c.display()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_holding_credentials_cannot_be_granted() {
        let creds = vec![std::path::PathBuf::from("/home/me/.kube/config")];
        for bad in [
            "/",
            "/home",
            "/home/me",
            "/home/me/.kube",
            "/home/me/.kube/config",
        ] {
            let e = check_fs_grant("p", std::path::Path::new(bad), &creds).unwrap_err();
            assert!(e.contains("holds the Kubernetes credentials"), "{bad}: {e}");
        }
        for fine in ["/home/me/work", "/home/mel", "/tmp"] {
            assert!(
                check_fs_grant("p", std::path::Path::new(fine), &creds).is_ok(),
                "{fine}"
            );
        }
    }
}
