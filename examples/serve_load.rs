//! A small closed-loop HTTP/1.1 load generator for `runner serve`: each of N keep-alive
//! connections sends the same GET back to back for a fixed time, then the requests per second
//! and latency percentiles are printed. `benches/serve_load.sh` runs it against a real server.
//!
//! ```sh
//! cargo run --release --example serve_load -- http://127.0.0.1:6006/v1/prompts/NAME/tags/production \
//!     [--connections 32] [--seconds 10] [--warmup 1] [--threads 2] [--token TOKEN] \
//!     [--unit-header X-Runner-Unit]
//! ```
//!
//! With `--unit-header H`, connection N sends `H: unit-N` on each request: a fleet of users,
//! each sticky to its arm under a canary rollout.
//!
//! It speaks just enough HTTP (a request line, Content-Length bodies) to cost the server's machine
//! little CPU itself, which matters when both share two cores.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    host: String,
    port: u16,
    path: String,
    connections: usize,
    seconds: f64,
    warmup: f64,
    threads: usize,
    token: Option<String>,
    unit_header: Option<String>,
}

/// What one connection saw after the warm-up.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_200: u64,
}

fn main() {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!(
                "hint: serve_load URL [--connections N] [--seconds S] [--warmup S] [--threads N] [--token T] [--unit-header H]"
            );
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (tally, measured) = match runtime.block_on(run(&options)) {
        Ok(result) => result,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(3);
        }
    };
    print!("{}", report(&options, &tally, measured));
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut url = None;
    let mut options = Options {
        host: String::new(),
        port: 0,
        path: String::new(),
        connections: 32,
        seconds: 10.0,
        warmup: 1.0,
        threads: 2,
        token: None,
        unit_header: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--connections" => options.connections = number(&value("--connections")?)?,
            "--seconds" => options.seconds = number(&value("--seconds")?)?,
            "--warmup" => options.warmup = number(&value("--warmup")?)?,
            "--threads" => options.threads = number(&value("--threads")?)?,
            "--token" => options.token = Some(value("--token")?),
            "--unit-header" => options.unit_header = Some(value("--unit-header")?),
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_string()),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let url = url.ok_or("the URL to load is missing")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or("the URL needs a port, e.g. http://127.0.0.1:6006/...")?;
    options.host = host.to_string();
    options.port = number(port)?;
    options.path = format!("/{path}");
    if options.connections == 0 || options.threads == 0 || options.seconds <= 0.0 {
        return Err("connections, threads and seconds must be positive".into());
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a number"))
}

async fn run(options: &Options) -> Result<(Tally, Duration), String> {
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\n",
        options.path, options.host, options.port
    );
    if let Some(token) = &options.token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(options.warmup);
    let until = measure_from + Duration::from_secs_f64(options.seconds);
    let mut tasks = Vec::with_capacity(options.connections);
    for n in 0..options.connections {
        let address = format!("{}:{}", options.host, options.port);
        let mut request = request.clone();
        if let Some(header) = &options.unit_header {
            request.push_str(&format!("{header}: unit-{n}\r\n"));
        }
        request.push_str("\r\n");
        let request = request.into_bytes();
        tasks.push(tokio::spawn(async move {
            connection(address, request, measure_from, until).await
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.map_err(|e| e.to_string())??;
        total.latencies_us.extend(tally.latencies_us);
        total.non_200 += tally.non_200;
    }
    Ok((total, until.saturating_duration_since(measure_from)))
}

/// One keep-alive connection sending requests back to back until `until`.
async fn connection(
    address: String,
    request: Vec<u8>,
    measure_from: Instant,
    until: Instant,
) -> Result<Tally, String> {
    let mut stream = TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tally = Tally::default();
    let mut buffer = Vec::with_capacity(8192);
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(tally);
        }
        stream
            .write_all(&request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let status = read_response(&mut stream, &mut buffer).await?;
        let done = Instant::now();
        if sent >= measure_from && done <= until {
            let micros = done.duration_since(sent).as_micros();
            tally
                .latencies_us
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
            if status != 200 {
                tally.non_200 += 1;
            }
        }
    }
}

/// Reads one response (headers, then a Content-Length body) and returns its status.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<u16, String> {
    buffer.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection mid-body".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn report(options: &Options, tally: &Tally, measured: Duration) -> String {
    let mut sorted = tally.latencies_us.clone();
    sorted.sort_unstable();
    let at = |q: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        f64::from(sorted[index]) / 1000.0
    };
    let requests = sorted.len();
    format!(
        "GET http://{}:{}{}\n\
         connections {}, client threads {}, {:.1} s measured after {:.1} s warm-up\n\
         requests {requests}, non-200 {}, {:.0} requests/s\n\
         latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
        options.host,
        options.port,
        options.path,
        options.connections,
        options.threads,
        measured.as_secs_f64(),
        options.warmup,
        tally.non_200,
        requests as f64 / measured.as_secs_f64(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0),
    )
}
