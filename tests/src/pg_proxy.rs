//! A TCP proxy in front of PostgreSQL for the sink's tests: it holds every answer of the
//! server for a while (a slow network: round trips become countable) or each COMMIT on its
//! way to the server (a slow disk), notes what the client sends (its bursts, the transactions its
//! connections hold open at once), and can cut a connection at a COMMIT (before it reaches
//! the server, or after, its answer lost).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::spawn;
use std::time::{Duration, Instant};

/// A simple-protocol `BEGIN` as the client sends it.
const BEGIN: &[u8] = b"Q\0\0\0\x0aBEGIN\0";
/// A simple-protocol `COMMIT` as the client sends it.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";
/// The server's answers that end a transaction (CommandComplete).
const ENDED: [&[u8]; 2] = [b"C\0\0\0\x0bCOMMIT\0", b"C\0\0\0\x0dROLLBACK\0"];

/// What the proxy holds back.
#[derive(Debug, Clone, Copy)]
pub enum Hold {
    /// Every answer of the server, this long (a slow network).
    Answers(Duration),
    /// Each COMMIT on its way to the server, this long (a slow disk: the transaction holds
    /// its locks and stays invisible that long after the rest of it was answered).
    Commits(Duration),
}

/// Where a cut connection stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// What comes before the COMMIT reaches the server; 300 ms later the connection is
    /// closed, the COMMIT never sent.
    BeforeCommit,
    /// The COMMIT reaches the server; its answer does not reach the client, and 300 ms later
    /// the connection is closed.
    AfterCommit,
}

#[derive(Default)]
struct Noted {
    /// When the client sent something.
    sends: Vec<Instant>,
    /// Connections inside a transaction the client began (its end not yet answered).
    in_tx: HashMap<usize, bool>,
    /// BEGINs sent while another connection was inside a transaction.
    overlaps: usize,
    /// The COMMIT (counted from the proxy's start) to cut at, and how.
    cut: Option<(usize, Cut)>,
    /// Cuts done: whether another connection was inside a transaction just before.
    cuts: Vec<bool>,
}

/// The proxy; it runs until the test process ends.
pub struct PgProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    noted: Arc<Mutex<Noted>>,
    commits: Arc<AtomicUsize>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl PgProxy {
    /// A proxy to the server at `upstream`, holding back what `hold` says.
    pub fn start(upstream: (String, u16), hold: Hold) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = PgProxy { port, noted: Arc::default(), commits: Arc::default() };
        let (noted, commits) = (proxy.noted.clone(), proxy.commits.clone());
        spawn(move || {
            for (id, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { break };
                let server = TcpStream::connect((upstream.0.as_str(), upstream.1)).unwrap();
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (noted, commits) = (noted.clone(), commits.clone());
                relay(id, client, server, hold, noted, commits);
            }
        });
        proxy
    }

    /// The client's bursts so far: sends apart by more than `gap` start a new one.
    pub fn bursts(&self, gap: Duration) -> usize {
        let sends = &self.noted.lock().unwrap().sends;
        sends.windows(2).filter(|w| w[1].duration_since(w[0]) > gap).count() + usize::from(!sends.is_empty())
    }

    /// Transactions begun while another connection's was still open (its end unanswered).
    pub fn overlaps(&self) -> usize {
        self.noted.lock().unwrap().overlaps
    }

    /// Cut the connection that sends the `nth` COMMIT from now (1: the next).
    pub fn cut_at_commit(&self, nth: usize, how: Cut) {
        self.noted.lock().unwrap().cut = Some((self.commits.load(SeqCst) + nth, how));
    }

    /// The cuts done: for each, whether another connection was inside a transaction just
    /// before the connection was closed.
    pub fn cuts(&self) -> Vec<bool> {
        self.noted.lock().unwrap().cuts.clone()
    }
}

/// Relay one connection both ways, noting and cutting as [`PgProxy`] says.
fn relay(
    id: usize,
    client: TcpStream,
    server: TcpStream,
    hold: Hold,
    noted: Arc<Mutex<Noted>>,
    commits: Arc<AtomicUsize>,
) {
    let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (client_end, server_end) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = noted.clone();
    // Set at a cut after the COMMIT: its answer and what follows do not reach the client.
    let mute = Arc::new(AtomicBool::new(false));
    let muted = mute.clone();
    spawn(move || {
        let mut buf = vec![0; 1 << 16];
        while let Ok(n @ 1..) = from_client.read(&mut buf) {
            let chunk = &buf[..n];
            let cut = sent(id, chunk, &up, &commits);
            let Some((at, how)) = cut else {
                let held = match (hold, find(chunk, COMMIT)) {
                    (Hold::Commits(d), Some(at)) => Some((d, at)),
                    _ => None,
                };
                let (now, later) = held.map_or((chunk, &[][..]), |(_, at)| chunk.split_at(at));
                if to_server.write_all(now).is_err() {
                    break;
                }
                if let Some((d, _)) = held {
                    std::thread::sleep(d);
                    if to_server.write_all(later).is_err() {
                        break;
                    }
                }
                continue;
            };
            // Withheld (or its answer lost) for a while: the next batch begins meanwhile.
            mute.store(how == Cut::AfterCommit, SeqCst);
            let _ = to_server.write_all(&chunk[..if how == Cut::BeforeCommit { at } else { n }]);
            std::thread::sleep(Duration::from_millis(300));
            {
                let mut noted = up.lock().unwrap();
                let others = noted.in_tx.iter().any(|(other, open)| *other != id && *open);
                noted.cuts.push(others);
                noted.in_tx.insert(id, false);
            }
            let _ = (client_end.shutdown(Shutdown::Both), server_end.shutdown(Shutdown::Both));
            break;
        }
        let _ = to_server.shutdown(Shutdown::Write);
        up.lock().unwrap().in_tx.insert(id, false);
    });
    let (mut from_server, mut to_client) = (server, client);
    let (held, release) = std::sync::mpsc::channel::<(Instant, Vec<u8>, bool)>();
    spawn(move || {
        let mut buf = vec![0; 1 << 16];
        while let Ok(n @ 1..) = from_server.read(&mut buf) {
            let (now, chunk) = (Instant::now(), &buf[..n]);
            let at = if let Hold::Answers(d) = hold { now + d } else { now };
            // Split where a transaction's end is answered, for a cut after the COMMIT.
            let end = ENDED.iter().filter_map(|e| find(chunk, e)).min();
            let (first, rest) = match end {
                Some(end) => ((at, &chunk[..end]), Some((at, &chunk[end..]))),
                None => ((at, chunk), None),
            };
            let _ = held.send((first.0, first.1.to_vec(), false));
            if let Some((at, bytes)) = rest {
                let _ = held.send((at, bytes.to_vec(), true));
            }
        }
    });
    spawn(move || {
        let mut dropping = false;
        for (at, bytes, ends) in release {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            // The connection stays open until the cut closes it; the client hears nothing.
            dropping |= ends && muted.load(SeqCst);
            if dropping {
                continue;
            }
            // Noted before the client can read it, and so begin another transaction.
            if ENDED.iter().any(|e| find(&bytes, e).is_some()) {
                noted.lock().unwrap().in_tx.insert(id, false);
            }
            if to_client.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
}

/// Note what the client sent on connection `id`; where to cut it, if this chunk's COMMIT is
/// the one to cut at.
fn sent(id: usize, chunk: &[u8], noted: &Mutex<Noted>, commits: &AtomicUsize) -> Option<(usize, Cut)> {
    let mut noted = noted.lock().unwrap();
    noted.sends.push(Instant::now());
    if find(chunk, BEGIN).is_some() {
        if noted.in_tx.iter().any(|(other, open)| *other != id && *open) {
            noted.overlaps += 1;
        }
        noted.in_tx.insert(id, true);
    }
    let at = find(chunk, COMMIT)?;
    let nth = commits.fetch_add(1, SeqCst) + 1;
    match noted.cut {
        Some((target, how)) if target == nth => {
            noted.cut = None;
            Some((at, how))
        }
        _ => None,
    }
}
