//! Images as stored: never trusted. The size is read from the header and refused
//! past `limits.image_max_pixels` before a pixel is allocated; the decoders run under
//! `image::Limits` as a second line; every still is decoded, turned upright by its
//! EXIF orientation and re-encoded (which leaves EXIF, GPS, XMP, ICC, comments and
//! every other metadata behind); animated GIFs are copied frame by frame without
//! their extensions; a JPEG thumbnail at most `THUMB_MAX_SIDE` px is made of each.
//! Everything here is synchronous and CPU-bound: it runs on `super::pool`.
//!
//! Memory: a decoded still takes at most 4 bytes × `image_max_pixels` (the budget
//! below refuses more, e.g. a 16-bit RGBA PNG of 40 MP); turning it by its EXIF
//! orientation (90° or 270°) copies it once more, so the worst case per worker is
//! about 8 bytes × `image_max_pixels` (320 MB at 40 MP), a usual photo (RGB,
//! no turn) 3 bytes per pixel.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::{WebPDecoder, WebPEncoder};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::ImageType;

/// The long side of a thumbnail, at most.
pub const THUMB_MAX_SIDE: u32 = 320;
const JPEG_QUALITY: u8 = 90;
const THUMB_QUALITY: u8 = 80;
/// Bytes per pixel the decode budget allows (RGBA, 8 bits a channel).
const BYTES_PER_PIXEL: u64 = 4;
/// What the decoders may allocate beside the image itself (tables, rows, chunks).
const DECODER_SLACK: u64 = 16 * 1024 * 1024;
/// All frames of an animation together may cover at most this many canvases of
/// `image_max_pixels` (the browsers that play it decode every frame).
const ANIMATION_PIXEL_FACTOR: u64 = 4;

/// The bounds of `limits.image_max_pixels` and `limits.image_max_frames`.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_pixels: u64,
    pub max_frames: u32,
}

/// An image as it is stored.
#[derive(Debug)]
pub struct Processed {
    /// The stored format (a still GIF becomes a PNG).
    pub ty: ImageType,
    pub data: Vec<u8>,
    /// After the EXIF orientation was applied.
    pub width: u32,
    pub height: u32,
    /// A JPEG at most `THUMB_MAX_SIDE` on its long side.
    pub thumbnail: Vec<u8>,
}

/// Why an image is not stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Too many pixels or frames (413 `image_too_large`).
    #[error("{0}")]
    TooLarge(String),
    /// Not decodable, or a variant Parley does not take (415).
    #[error("{0}")]
    Unsupported(String),
}

/// Checks, cleans and thumbnails the image `data` whose first bytes said `ty`.
pub fn process(data: &[u8], ty: ImageType, limits: ImageLimits) -> Result<Processed, Refused> {
    let (width, height) = dimensions(data, ty, limits)?;
    check_pixels(width, height, limits)?;
    if ty == ImageType::Webp && webp_is_animated(data)? {
        return Err(Refused::Unsupported(
            "animated WebP images are not accepted; send the animation as a GIF".into(),
        ));
    }
    if ty == ImageType::Gif {
        if let Some(copy) = copy_animated_gif(data, limits)? {
            // The first frame, for the thumbnail (and a check that it decodes).
            let first = decode_upright(data, ty, limits)?;
            return Ok(Processed {
                ty,
                data: copy,
                width,
                height,
                thumbnail: thumbnail(&first)?,
            });
        }
    }
    let img = decode_upright(data, ty, limits)?;
    let (ty, data) = encode(&img, ty)?;
    Ok(Processed {
        ty,
        data,
        width: img.width(),
        height: img.height(),
        thumbnail: thumbnail(&img)?,
    })
}

/// The size the header declares; nothing is decoded.
fn dimensions(data: &[u8], ty: ImageType, limits: ImageLimits) -> Result<(u32, u32), Refused> {
    let mut reader = ImageReader::with_format(Cursor::new(data), ty.format());
    reader.limits(decode_limits(limits));
    reader.into_dimensions().map_err(refusal)
}

fn check_pixels(width: u32, height: u32, limits: ImageLimits) -> Result<(), Refused> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(Refused::TooLarge(format!(
            "the image is {width} × {height} pixels; at most {} pixels are accepted",
            limits.max_pixels
        )));
    }
    if pixels == 0 {
        return Err(Refused::Unsupported("the image has no pixels".into()));
    }
    Ok(())
}

fn decode_limits(limits: ImageLimits) -> Limits {
    let mut l = Limits::default();
    l.max_alloc = Some(budget(limits));
    l
}

/// The most a decoded image may take, in bytes.
fn budget(limits: ImageLimits) -> u64 {
    limits
        .max_pixels
        .saturating_mul(BYTES_PER_PIXEL)
        .saturating_add(DECODER_SLACK)
}

/// Decodes (the first frame of an animation) and applies the EXIF orientation, so
/// the stored pixels are upright without the metadata that said how to turn them.
fn decode_upright(
    data: &[u8],
    ty: ImageType,
    limits: ImageLimits,
) -> Result<DynamicImage, Refused> {
    let mut reader = ImageReader::with_format(Cursor::new(data), ty.format());
    reader.limits(decode_limits(limits));
    let mut decoder = reader.into_decoder().map_err(refusal)?;
    // An unreadable EXIF block only means no turn.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    if decoder.total_bytes() > budget(limits) {
        return Err(Refused::TooLarge(format!(
            "the image would take {} bytes decoded; at most {} are allowed",
            decoder.total_bytes(),
            budget(limits)
        )));
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The still re-encoded in its own format (a GIF still as PNG): the encoders write
/// pixels and nothing else.
fn encode(img: &DynamicImage, ty: ImageType) -> Result<(ImageType, Vec<u8>), Refused> {
    let mut out = Vec::new();
    let stored = match ty {
        ImageType::Jpeg => {
            img.write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
                .map_err(refusal)?;
            ImageType::Jpeg
        }
        ImageType::Png | ImageType::Gif => {
            img.write_with_encoder(PngEncoder::new(&mut out))
                .map_err(refusal)?;
            ImageType::Png
        }
        ImageType::Webp => {
            // image's WebP encoder is lossless only; WebP takes 8-bit channels.
            let img = match img.color() {
                image::ColorType::L8
                | image::ColorType::La8
                | image::ColorType::Rgb8
                | image::ColorType::Rgba8 => img.clone(),
                _ => DynamicImage::ImageRgba8(img.to_rgba8()),
            };
            img.write_with_encoder(WebPEncoder::new_lossless(&mut out))
                .map_err(refusal)?;
            ImageType::Webp
        }
    };
    Ok((stored, out))
}

/// A JPEG of `img` at most `THUMB_MAX_SIDE` on its long side (never enlarged),
/// transparent parts on white.
pub fn thumbnail(img: &DynamicImage) -> Result<Vec<u8>, Refused> {
    let (w, h) = thumb_size(img.width(), img.height());
    let small = img.thumbnail_exact(w, h).to_rgba8();
    let mut rgb = RgbImage::new(small.width(), small.height());
    for (out, px) in rgb.pixels_mut().zip(small.pixels()) {
        let a = u32::from(px[3]);
        for c in 0..3 {
            let v = (u32::from(px[c]) * a + 255 * (255 - a) + 127) / 255;
            out[c] = u8::try_from(v).unwrap_or(u8::MAX);
        }
    }
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(rgb)
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, THUMB_QUALITY))
        .map_err(refusal)?;
    Ok(out)
}

fn thumb_size(w: u32, h: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= THUMB_MAX_SIDE {
        return (w.max(1), h.max(1));
    }
    let scale = |side: u32| {
        let v =
            (u64::from(side) * u64::from(THUMB_MAX_SIDE) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(v).unwrap_or(THUMB_MAX_SIDE).max(1)
    };
    (scale(w), scale(h))
}

fn webp_is_animated(data: &[u8]) -> Result<bool, Refused> {
    let decoder = WebPDecoder::new(Cursor::new(data)).map_err(refusal)?;
    Ok(decoder.has_animation())
}

/// An animated GIF (more than one frame) copied without its extensions: the
/// logical screen, the global palette, the loop count and each frame (its control
/// block, local palette and LZW data, not decompressed). `None` for a still.
fn copy_animated_gif(data: &[u8], limits: ImageLimits) -> Result<Option<Vec<u8>>, Refused> {
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    // A frame outside the canvas is refused rather than interpreted.
    options.check_frame_consistency(true);
    let mut decoder = options.read_info(data).map_err(gif_refusal)?;
    let (width, height) = (decoder.width(), decoder.height());
    let palette = decoder
        .global_palette()
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let area_budget = limits.max_pixels.saturating_mul(ANIMATION_PIXEL_FACTOR);
    let mut frames: Vec<gif::Frame<'static>> = Vec::new();
    let mut area = 0u64;
    while let Some(frame) = decoder.read_next_frame().map_err(gif_refusal)? {
        if frames.len() >= limits.max_frames as usize {
            return Err(Refused::TooLarge(format!(
                "animations are limited to {} frames",
                limits.max_frames
            )));
        }
        area += u64::from(frame.width) * u64::from(frame.height);
        if area > area_budget {
            return Err(Refused::TooLarge(format!(
                "the animation's frames cover more than {area_budget} pixels in all"
            )));
        }
        frames.push(frame.clone());
    }
    if frames.len() < 2 {
        return Ok(None);
    }
    let repeat = decoder.repeat();
    let mut encoder = gif::Encoder::new(Vec::with_capacity(data.len()), width, height, &palette)
        .map_err(gif_encode_refusal)?;
    encoder.set_repeat(repeat).map_err(gif_encode_refusal)?;
    for frame in &frames {
        encoder
            .write_lzw_pre_encoded_frame(frame)
            .map_err(gif_encode_refusal)?;
    }
    encoder.into_inner().map(Some).map_err(gif_encode_refusal)
}

fn refusal(e: image::ImageError) -> Refused {
    match e {
        image::ImageError::Limits(_) => {
            Refused::TooLarge("the image needs more memory to decode than the server allows".into())
        }
        other => Refused::Unsupported(format!("the image cannot be decoded: {other}")),
    }
}

fn gif_refusal(e: gif::DecodingError) -> Refused {
    Refused::Unsupported(format!("the GIF cannot be decoded: {e}"))
}

fn gif_encode_refusal(e: gif::EncodingError) -> Refused {
    Refused::Unsupported(format!("the GIF cannot be copied: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ImageLimits = ImageLimits {
        max_pixels: 40_000_000,
        max_frames: 300,
    };

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 200])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_with_encoder(PngEncoder::new(&mut out))
            .unwrap();
        out
    }

    #[test]
    fn thumbnails_keep_the_aspect_and_never_grow() {
        assert_eq!(thumb_size(4000, 3000), (320, 240));
        assert_eq!(thumb_size(1000, 4000), (80, 320));
        assert_eq!(thumb_size(100, 50), (100, 50));
        assert_eq!(thumb_size(100_000, 1), (320, 1));
    }

    #[test]
    fn a_png_is_re_encoded_with_its_size_and_a_thumbnail() {
        let p = process(&png(640, 400), ImageType::Png, LIMITS).unwrap();
        assert_eq!((p.ty, p.width, p.height), (ImageType::Png, 640, 400));
        let back = image::load_from_memory(&p.data).unwrap();
        assert_eq!((back.width(), back.height()), (640, 400));
        let thumb = image::load_from_memory(&p.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 200));
    }

    #[test]
    fn a_huge_header_is_refused_before_decoding() {
        let data = parley_testkit::pictures::png_claiming(100_000, 100_000);
        let started = std::time::Instant::now();
        let err = process(&data, ImageType::Png, LIMITS).unwrap_err();
        assert!(matches!(err, Refused::TooLarge(_)), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn garbage_after_a_signature_is_unsupported() {
        let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
        data.extend_from_slice(&[0x42; 64]);
        assert!(matches!(
            process(&data, ImageType::Png, LIMITS),
            Err(Refused::Unsupported(_))
        ));
    }

    /// The README's figure: a 12 MP photo (4000 × 3000 JPEG) is decoded, re-encoded
    /// and thumbnailed by one worker in the time printed here (`--nocapture`).
    #[test]
    fn a_12_megapixel_photo_is_processed_on_one_worker() {
        let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 239) as u8])
        });
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 90))
            .unwrap();
        let started = std::time::Instant::now();
        let p = process(&jpeg, ImageType::Jpeg, LIMITS).unwrap();
        let took = started.elapsed();
        println!("12 MP JPEG ({} bytes): processed in {took:?}", jpeg.len());
        assert_eq!((p.ty, p.width, p.height), (ImageType::Jpeg, 4000, 3000));
        let thumb = image::load_from_memory(&p.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 240));
        assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    }
}
