//! Images and files as the attachment tests make them: every format Parley takes as
//! an image, a JPEG carrying EXIF with GPS, a PNG whose header lies about its size,
//! and the `POST /api/media` form.

use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, Rgba, RgbaImage};
use reqwest::multipart::{Form, Part};

/// A `w` × `h` picture with a gradient (opaque: JPEG has no alpha).
pub fn picture(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
        Rgba([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            90,
            255,
        ])
    }))
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    picture(w, h)
        .write_with_encoder(PngEncoder::new(&mut out))
        .unwrap();
    out
}

pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(picture(w, h).to_rgb8())
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 85))
        .unwrap();
    out
}

pub fn webp(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    picture(w, h)
        .write_with_encoder(WebPEncoder::new_lossless(&mut out))
        .unwrap();
    out
}

/// A GIF of `frames` frames (one: a still).
pub fn gif(w: u32, h: u32, frames: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        if frames > 1 {
            enc.set_repeat(Repeat::Infinite).unwrap();
        }
        for i in 0..frames {
            let img = RgbaImage::from_fn(w, h, |x, _| {
                Rgba([((x + i * 10) % 256) as u8, (i * 40 % 256) as u8, 0, 255])
            });
            enc.encode_frame(image::Frame::new(img)).unwrap();
        }
    }
    out
}

/// What `gps_exif` hides in the description: found in served bytes = a leak.
pub const EXIF_SECRET: &[u8] = b"SECRET-GPS-52.5200N-13.4050E";

/// A little-endian TIFF block as in a camera's APP1: an ImageDescription holding
/// `EXIF_SECRET`, Orientation 6 (turn 90° clockwise to show) and a GPS IFD
/// (GPSVersionID 2.3, GPSLatitudeRef N).
pub fn gps_exif() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"II\x2a\x00");
    t.extend_from_slice(&8u32.to_le_bytes());
    let entry = |t: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&ty.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    };
    // IFD0 at 8: 3 entries (2 + 36 + 4 = 42 bytes, to 50); the GPS IFD at 50 (30
    // bytes, to 80); the description at 80.
    let description_len = EXIF_SECRET.len() as u32 + 1;
    t.extend_from_slice(&3u16.to_le_bytes());
    entry(&mut t, 0x010E, 2, description_len, 80u32.to_le_bytes());
    entry(&mut t, 0x0112, 3, 1, [6, 0, 0, 0]);
    entry(&mut t, 0x8825, 4, 1, 50u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut t, 0x0000, 1, 4, [2, 3, 0, 0]);
    entry(&mut t, 0x0001, 2, 2, [b'N', 0, 0, 0]);
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 80);
    t.extend_from_slice(EXIF_SECRET);
    t.push(0);
    t
}

/// `jpeg` with an APP1 `Exif` segment holding `tiff` right after its SOI marker.
pub fn with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
    let len = u16::try_from(2 + 6 + tiff.len()).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A small, valid PNG whose IHDR (CRC included) says `w` × `h`: decoding it as
/// declared would take `w × h × 4` bytes.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut data = png(1, 1);
    data[16..20].copy_from_slice(&w.to_be_bytes());
    data[20..24].copy_from_slice(&h.to_be_bytes());
    // IHDR: length at 8, type at 12, width and height at 16..24, CRC at 29..33.
    let crc = crc32fast::hash(&data[12..29]);
    data[29..33].copy_from_slice(&crc.to_be_bytes());
    data
}

/// The form the web client sends to `POST /api/media`: the chat and the file,
/// named `name` (the type is the server's to find out). The name goes as browsers
/// send it, UTF-8 in `filename="…"` (reqwest would otherwise switch to
/// `filename*=`, which browsers do not send).
pub fn media_form(chat: u64, bytes: Vec<u8>, name: &str) -> Form {
    Form::new()
        .percent_encode_noop()
        .text("chatId", chat.to_string())
        .part(
            "file",
            Part::bytes(bytes)
                .file_name(name.to_string())
                .mime_str("application/octet-stream")
                .unwrap(),
        )
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
