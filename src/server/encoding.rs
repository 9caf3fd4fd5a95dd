//! HTTP compression of large answers (the workspace summary is tens of MB
//! on workspaces of thousands of configs, and compresses about tenfold).
//!
//! The client's `Accept-Encoding` picks one of zstd (browsers since 2024),
//! gzip, or none; an encoding with `q=0` is refused. Bodies are compressed
//! once per answer and kept beside it by the caller, so repeated requests
//! cost a clone of the compressed bytes.

use std::io::Write;

/// A content coding n4a serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// `gzip` (level 1: several hundred MB/s, about 8x on summaries).
    Gzip,
    /// `zstd` (level 3: faster than gzip and smaller).
    Zstd,
}

impl Encoding {
    /// The `Content-Encoding` value, `None` for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Zstd => Some("zstd"),
        }
    }

    /// The best coding an `Accept-Encoding` value allows: zstd, then gzip,
    /// then none (`*` allows both).
    pub fn negotiate(accept: Option<&str>) -> Encoding {
        let Some(accept) = accept else {
            return Encoding::Identity;
        };
        let mut zstd = None;
        let mut gzip = None;
        let mut star = None;
        for part in accept.split(',') {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|v| v.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            match name.as_str() {
                "zstd" => zstd = Some(q),
                "gzip" | "x-gzip" => gzip = Some(q),
                "*" => star = Some(q),
                _ => {}
            }
        }
        let ok = |q: Option<f32>| q.or(star).is_some_and(|q| q > 0.0);
        if ok(zstd) {
            Encoding::Zstd
        } else if ok(gzip) {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// `body` in this coding.
    pub fn encode(self, body: &[u8]) -> bytes::Bytes {
        match self {
            Encoding::Identity => bytes::Bytes::copy_from_slice(body),
            Encoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 6),
                    flate2::Compression::fast(),
                );
                e.write_all(body).expect("compressing in memory");
                e.finish().expect("compressing in memory").into()
            }
            Encoding::Zstd => zstd::bulk::compress(body, 3)
                .expect("compressing in memory")
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept_encoding() {
        assert_eq!(Encoding::negotiate(None), Encoding::Identity);
        assert_eq!(
            Encoding::negotiate(Some("gzip, deflate, br, zstd")),
            Encoding::Zstd
        );
        assert_eq!(Encoding::negotiate(Some("gzip")), Encoding::Gzip);
        assert_eq!(
            Encoding::negotiate(Some("zstd;q=0, gzip;q=0.5")),
            Encoding::Gzip
        );
        assert_eq!(Encoding::negotiate(Some("*")), Encoding::Zstd);
        assert_eq!(Encoding::negotiate(Some("*;q=0")), Encoding::Identity);
        assert_eq!(Encoding::negotiate(Some("br")), Encoding::Identity);
    }

    #[test]
    fn bodies_decode_back() {
        let body =
            br#"{"a":[1,2,3],"b":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.repeat(50);
        let z = Encoding::Zstd.encode(&body);
        assert_eq!(zstd::bulk::decompress(&z, body.len()).unwrap(), body);
        let g = Encoding::Gzip.encode(&body);
        let mut d = flate2::read::GzDecoder::new(&g[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, body);
        assert!(g.len() < body.len() / 5);
    }
}
