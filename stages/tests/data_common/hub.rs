//! A local Hugging Face Hub on 127.0.0.1 serving dataset repos the way the Hub does
//! for the endpoints hf-hub uses: repo info (`/api/datasets/{id}/revision/{rev}`),
//! the recursive tree listing (`/api/datasets/{id}/tree/{rev}`) and file downloads
//! (`/datasets/{id}/resolve/{rev}/{path}`, HEAD and GET, with ETag, X-Repo-Commit,
//! X-Linked-Size / X-Linked-Etag for LFS files, and byte ranges). Error responses
//! carry the Hub's X-Error-Code header.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::Digest;

pub const COMMIT: &str = "5f0d6a3c2b1e4f5a6b7c8d9e0f1a2b3c4d5e6f70";

pub struct HubFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Stored in LFS: the tree lists its sha256, downloads report it as the ETag.
    pub lfs: bool,
}

/// How a repo answers.
pub enum Access {
    Open,
    /// 401, as for a gated or private repo without a valid token.
    Unauthorized,
    /// 403, as for a gated repo whose terms the token's user has not accepted.
    Forbidden,
    /// 503 to everything, as a Hub that cannot be reached.
    Unavailable,
}

pub struct HubRepo {
    pub id: String,
    pub access: Access,
    pub files: Vec<HubFile>,
    /// Downloads of the whole file that break off halfway, before the server
    /// behaves.
    pub broken_downloads: AtomicUsize,
    /// Serve LFS files with their last byte changed, as a corrupted transfer would.
    pub tampered: bool,
    /// The commit `main` points at (initially [`COMMIT`]); [`Hub::move_main`] moves
    /// it, as a push does. Both commits hold the same files.
    pub main: Mutex<String>,
}

impl HubRepo {
    pub fn new(id: &str, files: Vec<HubFile>) -> HubRepo {
        HubRepo {
            id: id.into(),
            access: Access::Open,
            files,
            broken_downloads: AtomicUsize::new(0),
            tampered: false,
            main: Mutex::new(COMMIT.into()),
        }
    }

    /// The commit `revision` names, if it names one.
    fn commit(&self, revision: &str) -> Option<String> {
        let main = self.main.lock().unwrap().clone();
        match revision {
            "main" => Some(main),
            _ if revision == COMMIT || revision == main => Some(revision.into()),
            _ => None,
        }
    }
}

pub struct Hub {
    pub endpoint: String,
    /// One line per request: `METHOD path [range=...] [auth=...]`.
    pub log: Arc<Mutex<Vec<String>>>,
    repos: Arc<BTreeMap<String, HubRepo>>,
}

impl Hub {
    pub fn start(repos: Vec<HubRepo>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let repos: Arc<BTreeMap<String, HubRepo>> =
            Arc::new(repos.into_iter().map(|r| (r.id.clone(), r)).collect());
        let (server_log, server_repos) = (log.clone(), repos.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (repos, log) = (server_repos.clone(), server_log.clone());
                std::thread::spawn(move || serve(stream, &repos, &log));
            }
        });
        Hub {
            endpoint,
            log,
            repos,
        }
    }

    /// Points `main` of `repo` at `commit`.
    pub fn move_main(&self, repo: &str, commit: &str) {
        *self.repos[repo].main.lock().unwrap() = commit.into();
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The git blob id stand-in for a file's content (the fake only needs it stable).
fn blob_id(bytes: &[u8]) -> String {
    sha256_hex(bytes)[..40].to_owned()
}

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then drop the connection.
    cut_at: Option<usize>,
}

impl Response {
    fn new(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body,
            cut_at: None,
        }
    }

    fn json(value: serde_json::Value) -> Self {
        Response::new(200, value.to_string().into_bytes())
            .header("Content-Type", "application/json")
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        Response::new(
            status,
            serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
        )
        .header("Content-Type", "application/json")
        .header("X-Error-Code", code)
        .header("X-Error-Message", message)
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn serve(mut stream: TcpStream, repos: &BTreeMap<String, HubRepo>, log: &Mutex<Vec<String>>) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let mut entry = format!("{} {}", request.method, request.path);
    if let Some(range) = request.headers.get("range") {
        entry.push_str(&format!(" range={range}"));
    }
    if let Some(auth) = request.headers.get("authorization") {
        entry.push_str(&format!(" auth={auth}"));
    }
    log.lock().unwrap().push(entry);
    let response = route(&request, repos);
    let reason = match response.status {
        200 => "OK",
        206 => "Partial Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let end = response.cut_at.unwrap_or(response.body.len());
        let _ = stream.write_all(&response.body[..end]);
    }
    let _ = stream.flush();
}

fn route(request: &Request, repos: &BTreeMap<String, HubRepo>) -> Response {
    if let Some(rest) = request.path.strip_prefix("/api/datasets/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let (owner, name, kind, revision) = match parts[..] {
            [owner, name] => (owner, name, "revision", "main"),
            [owner, name, kind, revision] => (owner, name, kind, revision),
            _ => return Response::error(404, "EntryNotFound", "no such endpoint"),
        };
        let revision = revision.split('/').next().unwrap_or(revision);
        let repo = match open_repo(repos, owner, name) {
            Ok(repo) => repo,
            Err(response) => return response,
        };
        let Some(commit) = repo.commit(revision) else {
            return Response::error(
                404,
                "RevisionNotFound",
                &format!("Invalid rev id: {revision}"),
            );
        };
        return match kind {
            "revision" => Response::json(serde_json::json!({
                "_id": "0000",
                "id": repo.id,
                "author": owner,
                "sha": commit,
                "private": false,
                "gated": false,
                "disabled": false,
                "siblings": repo.files.iter().map(|f| serde_json::json!({"rfilename": f.path})).collect::<Vec<_>>(),
            })),
            "tree" => Response::json(serde_json::Value::Array(
                repo.files.iter().map(tree_entry).collect(),
            )),
            _ => Response::error(404, "EntryNotFound", "no such endpoint"),
        };
    }
    if let Some(rest) = request.path.strip_prefix("/datasets/") {
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        let [owner, name, "resolve", revision, path] = parts[..] else {
            return Response::error(404, "EntryNotFound", "no such endpoint");
        };
        let repo = match open_repo(repos, owner, name) {
            Ok(repo) => repo,
            Err(response) => return response,
        };
        let Some(commit) = repo.commit(revision) else {
            return Response::error(404, "RevisionNotFound", "Invalid rev id");
        };
        let Some(file) = repo.files.iter().find(|f| f.path == path) else {
            return Response::error(404, "EntryNotFound", &format!("{path} does not exist"));
        };
        return resolve(request, repo, file, &commit);
    }
    Response::error(404, "EntryNotFound", "no such endpoint")
}

fn open_repo<'a>(
    repos: &'a BTreeMap<String, HubRepo>,
    owner: &str,
    name: &str,
) -> Result<&'a HubRepo, Response> {
    let id = format!("{owner}/{name}");
    let Some(repo) = repos.get(&id) else {
        return Err(Response::error(404, "RepoNotFound", "Repository not found"));
    };
    match repo.access {
        Access::Open => Ok(repo),
        Access::Unauthorized => Err(Response::error(
            401,
            "GatedRepo",
            &format!(
                "Access to dataset {id} is restricted. You must be authenticated to access it."
            ),
        )),
        Access::Forbidden => Err(Response::error(
            403,
            "GatedRepo",
            &format!(
                "Access to dataset {id} is restricted and you are not in the authorized list."
            ),
        )),
        Access::Unavailable => Err(Response::error(503, "Unavailable", "try again later")),
    }
}

fn tree_entry(file: &HubFile) -> serde_json::Value {
    let mut entry = serde_json::json!({
        "type": "file",
        "oid": blob_id(&file.bytes),
        "size": file.bytes.len(),
        "path": file.path,
    });
    if file.lfs {
        // The Hub's own key is `oid`; hf-hub 1.0 reads `sha256`. Both are served.
        let sha = sha256_hex(&file.bytes);
        entry["lfs"] = serde_json::json!({
            "oid": sha,
            "sha256": sha,
            "size": file.bytes.len(),
            "pointerSize": 134,
        });
    }
    entry
}

fn resolve(request: &Request, repo: &HubRepo, file: &HubFile, commit: &str) -> Response {
    let etag = if file.lfs {
        sha256_hex(&file.bytes)
    } else {
        blob_id(&file.bytes)
    };
    let size = file.bytes.len();
    let range = request
        .headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(start, end)| {
            let start: usize = start.parse().unwrap();
            let end: usize = if end.is_empty() {
                size - 1
            } else {
                end.parse().unwrap()
            };
            (start, end.min(size - 1))
        });
    let mut bytes = file.bytes.clone();
    if repo.tampered && file.lfs {
        bytes[size - 1] ^= 0xff;
    }
    let mut response = match range {
        Some((start, _)) if start >= size => return Response::new(416, Vec::new()),
        Some((start, end)) => Response::new(206, bytes[start..=end].to_vec())
            .header("Content-Range", format!("bytes {start}-{end}/{size}")),
        None => Response::new(200, bytes),
    };
    response = response
        .header("ETag", format!("\"{etag}\""))
        .header("X-Repo-Commit", commit)
        .header("Accept-Ranges", "bytes");
    if file.lfs && request.method == "HEAD" {
        response = response
            .header("X-Linked-Size", size.to_string())
            .header("X-Linked-Etag", format!("\"{etag}\""));
    }
    let broken = request.method == "GET"
        && range.is_none()
        && repo
            .broken_downloads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if broken {
        response.cut_at = Some(size / 2);
    }
    response
}
