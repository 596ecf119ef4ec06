//! What an upload is, decided by its first bytes (never by its name or the
//! client's Content-Type), and the name it is shown under.

use crate::audio::AudioType;

/// Bytes needed to recognise every accepted type (WebP: `RIFF....WEBP`).
pub const SNIFF_BYTES: usize = 12;

/// The image formats Parley decodes, re-encodes and thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl ImageType {
    /// Recognises an image from its first bytes (`SNIFF_BYTES`, or all of a shorter file).
    pub fn sniff(head: &[u8]) -> Option<ImageType> {
        match head {
            [0xFF, 0xD8, 0xFF, ..] => Some(ImageType::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ImageType::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageType::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => {
                Some(ImageType::Webp)
            }
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Gif => "image/gif",
            ImageType::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Gif => "gif",
            ImageType::Webp => "webp",
        }
    }

    pub fn format(self) -> image::ImageFormat {
        match self {
            ImageType::Jpeg => image::ImageFormat::Jpeg,
            ImageType::Png => image::ImageFormat::Png,
            ImageType::Gif => image::ImageFormat::Gif,
            ImageType::Webp => image::ImageFormat::WebP,
        }
    }
}

/// What the first bytes of a plaintext upload say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Image(ImageType),
    Audio(AudioType),
    /// Anything else: stored as is, served only as a download.
    File,
}

impl Sniffed {
    pub fn of(head: &[u8]) -> Sniffed {
        if let Some(t) = ImageType::sniff(head) {
            Sniffed::Image(t)
        } else if let Some(t) = AudioType::sniff(head) {
            Sniffed::Audio(t)
        } else {
            Sniffed::File
        }
    }
}

/// The longest display name, in bytes (`media_files.name` is VARCHAR(255); utf8mb4
/// counts characters, so bytes are the stricter bound).
pub const NAME_MAX_BYTES: usize = 255;

/// The client's file name made fit to show: its last path component only, without
/// control characters or the invisible ones that reorder or hide text (a name like
/// `photo\u{202E}gpj.exe` must not read as `photoexe.jpg`), trimmed, at most
/// `NAME_MAX_BYTES` (cut on a character boundary); `file` when nothing is left.
/// It is only ever shown and sent back in Content-Disposition, never used in a path.
pub fn display_name(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or_default();
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|&c| !hidden(c)).collect();
    let trimmed = cleaned.trim();
    if trimmed.chars().all(|c| c == '.') {
        return "file".to_owned();
    }
    let mut end = trimmed.len().min(NAME_MAX_BYTES);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let cut = trimmed[..end].trim_end();
    if cut.is_empty() {
        "file".to_owned()
    } else {
        cut.to_owned()
    }
}

/// Control characters, bidirectional overrides and isolates, and zero-width marks.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_audio_and_the_rest_are_told_apart_by_their_first_bytes() {
        let cases: [(&[u8], Sniffed); 9] = [
            (
                &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
                Sniffed::Image(ImageType::Jpeg),
            ),
            (
                b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR",
                Sniffed::Image(ImageType::Png),
            ),
            (b"GIF89a\x01\0\x01\0", Sniffed::Image(ImageType::Gif)),
            (b"GIF87a\x01\0\x01\0", Sniffed::Image(ImageType::Gif)),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Sniffed::Image(ImageType::Webp)),
            (b"OggS\0\x02rest", Sniffed::Audio(AudioType::Ogg)),
            (b"%PDF-1.7\n%\xe2\xe3", Sniffed::File),
            (b"<svg xmlns=", Sniffed::File),
            (b"RIFF\0\0\0\0WAVEfmt ", Sniffed::File),
        ];
        for (head, want) in cases {
            assert_eq!(Sniffed::of(head), want, "{head:?}");
        }
        // A PNG signature cut short is not a PNG.
        assert_eq!(Sniffed::of(b"\x89PNG"), Sniffed::File);
        assert_eq!(Sniffed::of(b""), Sniffed::File);
    }

    #[test]
    fn display_names_lose_paths_controls_and_bidi_tricks() {
        for (raw, want) in [
            (Some("holiday.jpg"), "holiday.jpg"),
            (Some("../../etc/passwd"), "passwd"),
            (Some("C:\\Users\\ann\\report.pdf"), "report.pdf"),
            (Some("a\u{0}b\nc\rd\u{7f}.txt"), "abcd.txt"),
            (Some("invoice\u{202E}fdp.exe"), "invoicefdp.exe"),
            (Some("zero\u{200B}width\u{2066}.png"), "zerowidth.png"),
            (Some("  spaced.txt  "), "spaced.txt"),
            (Some(".."), "file"),
            (Some("dir/"), "file"),
            (Some("\u{1}\u{2}"), "file"),
            (None, "file"),
            (Some("Привет мир.docx"), "Привет мир.docx"),
        ] {
            assert_eq!(display_name(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let name = display_name(Some(&long));
        assert!(name.len() <= NAME_MAX_BYTES, "{}", name.len());
        assert_eq!(name, "é".repeat(127));
    }
}
