//! Text helpers for pipelines that read text.

/// The words of `line`: its runs of letters and digits (Unicode alphanumerics), lower-cased.
///
/// ```
/// use exactly_operators::text::words;
///
/// assert_eq!(words("In the beginning God created the heaven."), ["in", "the", "beginning", "god", "created", "the", "heaven"]);
/// assert!(words(" -- ").is_empty());
/// ```
pub fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}
