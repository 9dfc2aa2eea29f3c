//! `write-floor`: what one delivery costs the kernel on this machine, the floor under a chat
//! server's cost per delivery (docs/BENCHMARKS.md, issue 16).
//!
//! One thread writes WebSocket text frames (server frames: unmasked, 200 bytes by default) to
//! loopback TCP sockets (TCP_NODELAY), one `write` per frame, the way a chat server fans a
//! message out: `--rate` messages per second, each to `--fanout` sockets picked at random out of
//! `--sockets`. The other ends are drained the way chat-bench's clients read: tasks of one tokio
//! runtime (`--reader-threads` workers), woken by epoll. The writing thread's own CPU time
//! (`/proc/thread-self/schedstat`, and user/system from `/proc/thread-self/stat`) divided by the
//! writes is the floor: no runtime, no queue, no framing, only the system call.
//!
//! ```sh
//! cargo run --release -p chat-bench --bin write-floor                 # seed: 1500 msg/s × 15
//! cargo run --release -p chat-bench --bin write-floor -- --sockets 1000 --fanout 1000 --rate 50
//! ```

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;

/// The floor under the cost of one delivery: a thread writing frames to loopback sockets.
#[derive(Debug, Parser)]
#[command(name = "write-floor")]
struct Args {
    /// Loopback connections written to.
    #[arg(long, default_value_t = 100)]
    sockets: usize,
    /// Sockets each message is written to (at most --sockets).
    #[arg(long, default_value_t = 15)]
    fanout: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 1500.0)]
    rate: f64,
    /// Bytes of each frame's payload.
    #[arg(long, default_value_t = 200)]
    frame_bytes: usize,
    /// Seconds of writing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Worker threads of the runtime draining the sockets.
    #[arg(long, default_value_t = 1)]
    reader_threads: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let fanout = args.fanout.min(args.sockets).max(1);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let readers_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.reader_threads.max(1))
        .enable_io()
        .build()?;
    let mut writers = Vec::with_capacity(args.sockets);
    let mut readers = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let writer = TcpStream::connect(address)?;
        writer.set_nodelay(true)?;
        let (reader, _) = listener.accept()?;
        reader.set_nonblocking(true)?;
        writers.push(writer);
        readers.push(readers_runtime.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut reader = tokio::net::TcpStream::from_std(reader)?;
            let mut buffer = vec![0u8; 16 * 1024];
            let mut total = 0u64;
            loop {
                match reader.read(&mut buffer).await? {
                    0 => return Ok::<u64, std::io::Error>(total),
                    n => total += n as u64,
                }
            }
        }));
    }
    let frame = text_frame(args.frame_bytes);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let cpu_before = thread_cpu();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut next = start;
    let mut writes = 0u64;
    let mut picked = Vec::with_capacity(fanout);
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        picked.clear();
        while picked.len() < fanout {
            let socket = random.below(args.sockets);
            if !picked.contains(&socket) {
                picked.push(socket);
            }
        }
        for &socket in &picked {
            writers[socket].write_all(&frame)?;
            writes += 1;
        }
        next += interval;
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu().since(cpu_before);
    drop(writers);
    let received: u64 = readers_runtime.block_on(async {
        let mut received = 0;
        for reader in readers {
            received += reader.await.ok().and_then(Result::ok).unwrap_or(0);
        }
        received
    });
    let sent = writes * frame.len() as u64;
    println!("sockets                {}", args.sockets);
    println!("fanout                 {fanout}");
    println!("frame                  {} bytes", frame.len());
    println!(
        "writes                 {writes} in {:.2} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64()
    );
    println!(
        "bytes received         {received} of {sent}{}",
        if received == sent { "" } else { " (MISSING)" }
    );
    println!(
        "writer cpu             {:.1} % of one core (user {:.1} %, system {:.1} %)",
        100.0 * cpu.run.as_secs_f64() / elapsed.as_secs_f64(),
        100.0 * cpu.user.as_secs_f64() / elapsed.as_secs_f64(),
        100.0 * cpu.system.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "per write              {:.2} µs (system {:.2} µs)",
        cpu.run.as_secs_f64() * 1e6 / writes as f64,
        cpu.system.as_secs_f64() * 1e6 / writes as f64
    );
    if received != sent {
        return Err(std::io::Error::other(
            "the readers did not receive every byte",
        ));
    }
    Ok(())
}

/// A WebSocket text frame as a server writes it: FIN + text, no mask, `payload` bytes of text.
fn text_frame(payload: usize) -> Vec<u8> {
    let mut frame = vec![0x81];
    match payload {
        0..=125 => frame.push(payload as u8),
        126..=65535 => {
            frame.push(126);
            frame.extend_from_slice(&(payload as u16).to_be_bytes());
        }
        _ => {
            frame.push(127);
            frame.extend_from_slice(&(payload as u64).to_be_bytes());
        }
    }
    frame.resize(frame.len() + payload, b'x');
    frame
}

/// The CPU time of the calling thread.
#[derive(Debug, Clone, Copy)]
struct ThreadCpu {
    /// On the CPU, from the scheduler (nanoseconds).
    run: Duration,
    /// User and system time (clock ticks, 100 per second).
    user: Duration,
    system: Duration,
}

impl ThreadCpu {
    fn since(self, before: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            run: self.run.saturating_sub(before.run),
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
        }
    }
}

fn thread_cpu() -> ThreadCpu {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let run_ns: u64 = schedstat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let tick = |index: usize| Duration::from_millis(10 * fields.get(index).copied().unwrap_or(0));
    ThreadCpu {
        run: Duration::from_nanos(run_ns),
        user: tick(11),
        system: tick(12),
    }
}

/// A small deterministic generator (xorshift64*), enough to pick sockets.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
