//! "Did you mean" suggestions for misspelt keys, ids and names.

/// The candidate closest to `typo`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let typo_lower = typo.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&typo_lower, &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| {
            // One edit for short words, up to a third of the length for longer ones.
            let len = typo.chars().count().max(c.chars().count());
            *d <= (len / 3).max(1)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested() {
        let keys = ["timeout", "retry", "needs", "uses", "with"];
        assert_eq!(did_you_mean("tiemout", keys), Some("timeout"));
        assert_eq!(did_you_mean("retyr", keys), Some("retry"));
        assert_eq!(did_you_mean("use", keys), Some("uses"));
        assert_eq!(did_you_mean("Timeout", keys), Some("timeout"));
    }

    #[test]
    fn distant_words_are_not() {
        assert_eq!(did_you_mean("banana", ["timeout", "retry"]), None);
        assert_eq!(did_you_mean("x", ["with"]), None);
    }
}
