//! One canonical form for the names people sign in with. MySQL compares `email` and
//! `username` under `utf8mb4_unicode_ci`, which ignores case, accents, control and
//! zero-width characters: `victor`, `VICTOR`, `vi\u{200b}ctor` and `v\u{1}ictor` are
//! one row to it. Anything keyed on the raw text (a throttle, a cache) would see four
//! strangers. So identifiers are folded to NFKC + case folding (NFKC_Casefold, close
//! enough: NFKC, fold, NFKC again) before any use, and characters that are invisible
//! or have no business in a name are refused outright rather than silently dropped.

use std::borrow::Cow;

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Whether `c` may never appear in an email or a username: control and format
/// characters (zero-width space and joiners, bidi overrides, the BOM, soft hyphen),
/// default-ignorable ones (variation selectors, Hangul fillers), private-use,
/// unassigned and surrogate code points, and line or paragraph separators.
pub fn is_forbidden(c: char) -> bool {
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) {
        return true;
    }
    matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::Surrogate
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `raw` trimmed, NFKC-normalised and case-folded; `None` when it holds a forbidden
/// character (before or after normalising).
pub fn fold(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.chars().any(is_forbidden) {
        return None;
    }
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let once = nfkc.normalize(trimmed);
    let folded = CaseMapper::new().fold_string(&once);
    // Folding can leave a string that is no longer NFKC (e.g. a folded letter that
    // now composes with the accent after it): normalise once more.
    let again: Cow<str> = nfkc.normalize(&folded);
    let out = String::from(again);
    if out.chars().any(is_forbidden) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn variants_fold_to_one_form() {
        for raw in ["victor", " Victor ", "VICTOR", "ｖｉｃｔｏｒ", "\u{212a}im"] {
            let f = fold(raw).unwrap();
            assert!(f == "victor" || f == "kim", "{raw:?} folded to {f:?}");
        }
        assert_eq!(fold("Straße").unwrap(), "strasse");
        assert_eq!(fold("e\u{301}").unwrap(), "\u{e9}", "composed");
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for raw in [
            "vi\u{200b}ctor",
            "vi\u{200c}ctor",
            "vi\u{200d}ctor",
            "vi\u{2060}ctor",
            "\u{feff}victor",
            "v\u{1}ictor",
            "v\u{7f}ictor",
            "vic\u{ad}tor",
            "vic\u{202e}tor",
            "vic\u{fe0f}tor",
            "vic\u{115f}tor",
            "vic\u{e000}tor",
            "vic\u{2028}tor",
        ] {
            assert!(fold(raw).is_none(), "{raw:?} was accepted");
        }
    }
}
