//! Just enough PNG to carry a card: walking chunks to find the `chara` /
//! `ccv3` text chunks, and writing a small uncompressed avatar with them.

use std::path::Path;

use super::{CardError, MAX_TEXT_CHUNK};

pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// The PNG spec caps chunk lengths at 2^31 - 1.
const MAX_CHUNK_LEN: u32 = 0x7fff_ffff;

/// CRC-32 (ISO 3309, as PNG uses it), table built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0xffff_ffff, bytes) ^ 0xffff_ffff
}

pub(crate) fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the longest run before `b` could overflow u32 (zlib's NMAX).
    for block in bytes.chunks(5552) {
        for &x in block {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// A zlib stream of "stored" (uncompressed) deflate blocks: every decoder
/// reads it, and avatars are tiny, so compression is not worth the code.
pub(crate) fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65_535 * 5 + 16);
    // CMF 0x78 (deflate, 32K window), FLG 0x01 makes CMF*256+FLG divisible by 31.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        // An empty input still needs one final block.
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = block.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// The card text chunks found in a PNG, raw (still base64).
#[derive(Debug, Default)]
pub(crate) struct CardChunks {
    pub chara: Option<Vec<u8>>,
    pub ccv3: Option<Vec<u8>>,
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Walks every chunk up to IEND, checking lengths and CRCs, and keeps the
/// first `chara` and `ccv3` tEXt chunks.
pub(crate) fn read_card_chunks(bytes: &[u8], path: &Path) -> Result<CardChunks, CardError> {
    if bytes.get(..8) != Some(&SIGNATURE[..]) {
        return Err(CardError::BadSignature {
            path: path.to_path_buf(),
        });
    }
    let bad = |chunk: &str, offset: usize, problem: String| CardError::BadChunk {
        path: path.to_path_buf(),
        chunk: chunk.to_string(),
        offset,
        problem,
    };
    let mut found = CardChunks::default();
    let mut pos = 8usize;
    let mut first = true;
    loop {
        if pos >= bytes.len() {
            return Err(bad(
                "IEND",
                pos,
                "is missing: the file ends early (truncated?)".into(),
            ));
        }
        let (Some(len), Some(kind)) = (be_u32(bytes, pos), bytes.get(pos + 4..pos + 8)) else {
            return Err(bad(
                "?",
                pos,
                "header is cut off: the file ends early (truncated?)".into(),
            ));
        };
        let name: String = kind.iter().map(|&b| char::from(b)).collect();
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(bad(
                &name.escape_default().to_string(),
                pos,
                "has an invalid type".into(),
            ));
        }
        if first && kind != b"IHDR" {
            return Err(bad(
                &name,
                pos,
                "comes first, but a PNG must start with 'IHDR'".into(),
            ));
        }
        first = false;
        if len > MAX_CHUNK_LEN {
            return Err(bad(
                &name,
                pos,
                format!("declares length '{len}', over the PNG limit"),
            ));
        }
        let len = len as usize;
        let data_start = pos + 8;
        // data + 4-byte CRC must fit in what is left of the file.
        let remaining = bytes.len() - data_start;
        if len > remaining.saturating_sub(4) || remaining < 4 {
            return Err(bad(
                &name,
                pos,
                format!(
                    "declares length '{len}' but only '{}' bytes follow (truncated?)",
                    remaining.saturating_sub(4)
                ),
            ));
        }
        let is_text = kind == b"tEXt";
        if is_text && len > MAX_TEXT_CHUNK {
            return Err(CardError::TooLarge {
                path: path.to_path_buf(),
                what: format!("text chunk at byte {pos}"),
                size: len as u64,
                limit: MAX_TEXT_CHUNK as u64,
            });
        }
        let data = &bytes[data_start..data_start + len];
        let stored_crc = be_u32(bytes, data_start + len).unwrap_or_default();
        let actual_crc = crc32_update(crc32_update(0xffff_ffff, kind), data) ^ 0xffff_ffff;
        if stored_crc != actual_crc {
            return Err(bad(
                &name,
                pos,
                format!(
                    "has a CRC mismatch (stored '{stored_crc:08x}', computed '{actual_crc:08x}')"
                ),
            ));
        }
        if is_text && let Some(nul) = data.iter().position(|&b| b == 0) {
            let (keyword, text) = (&data[..nul], &data[nul + 1..]);
            // The first chunk of a kind wins, as in SillyTavern.
            match keyword {
                b"chara" if found.chara.is_none() => found.chara = Some(text.to_vec()),
                b"ccv3" if found.ccv3.is_none() => found.ccv3 = Some(text.to_vec()),
                _ => {}
            }
        }
        pos = data_start + len + 4;
        if kind == b"IEND" {
            return Ok(found);
        }
    }
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An RGB8 PNG with the given tEXt chunks (keyword, Latin-1/ASCII text).
pub(crate) fn write_png(width: u32, height: u32, rgb: &[u8], texts: &[(&str, &str)]) -> Vec<u8> {
    let row = width as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for line in rgb.chunks(row.max(1)).take(height as usize) {
        raw.push(0); // filter type None
        raw.extend_from_slice(line);
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // 8-bit depth, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut out = SIGNATURE.to_vec();
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    for (keyword, text) in texts {
        let mut data = Vec::with_capacity(keyword.len() + 1 + text.len());
        data.extend_from_slice(keyword.as_bytes());
        data.push(0);
        data.extend_from_slice(text.as_bytes());
        push_chunk(&mut out, b"tEXt", &data);
    }
    push_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 64×64 two-colour, left-right symmetric 5×5 pattern derived from the
/// name, so each exported character gets a recognisable avatar.
pub(crate) fn avatar(name: &str) -> (u32, u32, Vec<u8>) {
    const SIZE: usize = 64;
    const CELL: usize = 10;
    const MARGIN: usize = (SIZE - 5 * CELL) / 2;
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let hue = [(h >> 24) as u8, (h >> 16) as u8, (h >> 8) as u8];
    let fg = hue.map(|c| 40 + c / 2); // mid-dark
    let bg = hue.map(|c| 215 + c / 7); // pale tint of the same colour
    let mut rgb = Vec::with_capacity(SIZE * SIZE * 3);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let inside = (MARGIN..MARGIN + 5 * CELL).contains(&x)
                && (MARGIN..MARGIN + 5 * CELL).contains(&y);
            let on = inside && {
                let (cx, cy) = ((x - MARGIN) / CELL, (y - MARGIN) / CELL);
                let col = cx.min(4 - cx); // mirror columns 3,4 onto 1,0
                (h >> (col * 5 + cy)) & 1 == 1
            };
            rgb.extend_from_slice(if on { &fg } else { &bg });
        }
    }
    (SIZE as u32, SIZE as u32, rgb)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_adler_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(adler32(&[]), 1);
    }

    #[test]
    fn zlib_stored_splits_large_input() {
        let data = vec![7u8; 70_000];
        let z = zlib_stored(&data);
        // header, two block headers, payload, checksum
        assert_eq!(z.len(), 2 + 5 + 5 + 70_000 + 4);
        assert_eq!(z[2], 0); // first block not final
        assert_eq!(z[2 + 5 + 65_535], 1); // second block final
    }

    #[test]
    fn written_png_reads_back() {
        let (w, h, rgb) = avatar("Test");
        let png = write_png(w, h, &rgb, &[("chara", "abc"), ("ccv3", "def")]);
        let found = read_card_chunks(&png, Path::new("t.png")).unwrap();
        assert_eq!(found.chara.as_deref(), Some(&b"abc"[..]));
        assert_eq!(found.ccv3.as_deref(), Some(&b"def"[..]));
    }
}
