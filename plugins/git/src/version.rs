//! Release tags of the form `<prefix>MAJOR.MINOR.PATCH` (`v1.2.3`) and their bumps.

use std::fmt;

/// A plain `MAJOR.MINOR.PATCH` version (no pre-release or build part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

/// Which part a bump increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Major,
    Minor,
    Patch,
}

impl Version {
    /// `tag` without `prefix`, if the rest is exactly `N.N.N` (no leading zeros
    /// except `0` itself, as semver says).
    pub fn from_tag(tag: &str, prefix: &str) -> Option<Version> {
        let rest = tag.strip_prefix(prefix)?;
        let mut parts = rest.split('.');
        let mut next = || -> Option<u64> {
            let p = parts.next()?;
            let canonical = !p.is_empty()
                && p.len() <= 18
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            canonical.then(|| p.parse().ok()).flatten()
        };
        let v = Version {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        parts.next().is_none().then_some(v)
    }

    pub fn bumped(self, bump: Bump) -> Version {
        match bump {
            Bump::Major => Version {
                major: self.major + 1,
                minor: 0,
                patch: 0,
            },
            Bump::Minor => Version {
                major: self.major,
                minor: self.minor + 1,
                patch: 0,
            },
            Bump::Patch => Version {
                patch: self.patch + 1,
                ..self
            },
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The highest version among `tags` that have `prefix`, with its tag.
pub fn latest<'a>(
    tags: impl IntoIterator<Item = &'a str>,
    prefix: &str,
) -> Option<(Version, &'a str)> {
    tags.into_iter()
        .filter_map(|t| Version::from_tag(t, prefix).map(|v| (v, t)))
        .max_by_key(|(v, _)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let v = |a, b, c| Version {
            major: a,
            minor: b,
            patch: c,
        };
        assert_eq!(Version::from_tag("v1.2.3", "v"), Some(v(1, 2, 3)));
        assert_eq!(Version::from_tag("1.2.3", ""), Some(v(1, 2, 3)));
        assert_eq!(
            Version::from_tag("release-10.0.7", "release-"),
            Some(v(10, 0, 7))
        );
        for bad in [
            "v1.2",
            "v1.2.3.4",
            "v1.2.3-rc.1",
            "v01.2.3",
            "1.2.3",
            "v1..3",
            "v1.2.x",
            "v",
        ] {
            assert_eq!(Version::from_tag(bad, "v"), None, "{bad}");
        }
    }

    #[test]
    fn bumps_and_latest() {
        let base = Version::from_tag("v1.2.3", "v").unwrap();
        assert_eq!(base.bumped(Bump::Patch).to_string(), "1.2.4");
        assert_eq!(base.bumped(Bump::Minor).to_string(), "1.3.0");
        assert_eq!(base.bumped(Bump::Major).to_string(), "2.0.0");
        let tags = [
            "v1.2.3",
            "v1.10.0",
            "v1.9.9",
            "v2.0.0-rc.1",
            "other",
            "x1.99.0",
        ];
        let (v, t) = latest(tags, "v").unwrap();
        assert_eq!((v.to_string(), t), ("1.10.0".to_owned(), "v1.10.0"));
        assert_eq!(latest(["a", "b"], "v"), None);
    }
}
