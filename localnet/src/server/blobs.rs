//! Plain HTTP `GET /model/{id}` and `GET /data/{id}` on the fullnode port (§8):
//! the bytes a model's manifest (encrypted weights) or a filled target's data
//! manifest points to, with `Range` support for validators' 5 MiB parts.
//!
//! A local network has no validators to fetch from, so blobs are kept in the
//! data folder's `blobs/` under the hex of their Blake2b-256 checksum
//! ([`store_blob`]); a `file://` manifest URL is read directly. Like a
//! validator, the server checks size and checksum before serving (502 if they
//! differ); 400 for a malformed id, 404 for an unknown model or target.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use soma_flow_chain::{Checksum, Manifest, ObjectID};
use tonic::body::Body;

use super::Node;

/// Stores `bytes` where `/model/` and `/data/` find them; returns the path.
pub fn store_blob(data_dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("blobs");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(hex::encode(Checksum::of(bytes).0));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from(text.to_owned()))));
    *response.status_mut() = status;
    response
}

/// The id of a `/model/` or `/data/` path: exactly 64 hex digits, `0x` optional.
fn path_id(rest: &str) -> Option<ObjectID> {
    let digits = rest.strip_prefix("0x").unwrap_or(rest);
    (digits.len() == 64).then(|| digits.parse().ok()).flatten()
}

pub fn serve(node: &Node, path: &str, headers: &HeaderMap) -> Response<Body> {
    let (kind, rest) = match path.strip_prefix("/model/") {
        Some(rest) => ("model", rest),
        None => ("data", path.strip_prefix("/data/").unwrap_or_default()),
    };
    let Some(id) = path_id(rest) else {
        return plain(StatusCode::BAD_REQUEST, "expected a 64-hex-digit id");
    };
    let manifest = {
        let ledger = node.ledger();
        if kind == "model" {
            ledger
                .model(&id)
                .and_then(|m| m.commit.as_ref())
                .map(|c| c.manifest.clone())
        } else {
            ledger
                .target(&id)
                .and_then(|t| t.winning_data_manifest)
                .map(|m| m.manifest)
        }
    };
    let Some(manifest) = manifest else {
        return plain(
            StatusCode::NOT_FOUND,
            &format!("no {kind} manifest for {id}"),
        );
    };
    let bytes = match read_blob(&node.blobs_dir(), &manifest) {
        Ok(bytes) => bytes,
        Err(reason) => return plain(StatusCode::BAD_GATEWAY, &reason),
    };
    ranged(bytes, headers)
}

/// The manifest's bytes, verified against its size and checksum.
fn read_blob(blobs: &Path, manifest: &Manifest) -> Result<Bytes, String> {
    let stored = blobs.join(hex::encode(manifest.checksum().0));
    let path = if stored.exists() {
        stored
    } else {
        url::Url::parse(manifest.url().as_str())
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| format!("no stored blob for {}", manifest.url()))?
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read the blob: {e}"))?;
    if bytes.len() as u64 != manifest.size() || Checksum::of(&bytes) != manifest.checksum() {
        return Err("the blob does not match its manifest's size and checksum".to_owned());
    }
    Ok(Bytes::from(bytes))
}

/// 200 with everything, or 206 with one `bytes=a-b` / `a-` / `-n` range.
fn ranged(bytes: Bytes, headers: &HeaderMap) -> Response<Body> {
    let len = bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, len));
    let (status, body, content_range) = match range {
        None => (StatusCode::OK, bytes, None),
        Some(Some((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            bytes.slice(start as usize..=end as usize),
            Some(format!("bytes {start}-{end}/{len}")),
        ),
        Some(None) => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, "unsatisfiable range");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(v) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// The inclusive byte range of a single-range `Range` header, if satisfiable.
pub fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (start, "") => (start.parse().ok()?, len.checked_sub(1)?),
        (start, end) => (
            start.parse().ok()?,
            end.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && end < len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(parse_range("bytes=10-12", 10), None);
        assert_eq!(parse_range("bytes=4-2", 10), None);
        assert_eq!(parse_range("bytes=0-1", 0), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }
}
