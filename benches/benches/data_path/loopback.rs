//! Baselines over loopback TCP with no broker: what the machine's network stack gives when
//! nothing but the kernel stands between two sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{Pacer, latency_histogram};

/// Bytes per write of the throughput baseline.
const WRITE_BYTES: usize = 1 << 20;

/// Sends `total_bytes` through a loopback connection in 1 MiB writes to a reader that
/// discards them; returns the time from the first write until the reader has every byte.
pub(crate) fn throughput(total_bytes: u64) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let addr = listener.local_addr().expect("the listener's address");
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept the writer");
        let mut buffer = vec![0u8; WRITE_BYTES];
        let mut received = 0u64;
        loop {
            match stream.read(&mut buffer).expect("read from loopback") {
                0 => return received,
                n => received += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(addr).expect("connect over loopback");
    let chunk = vec![0x5au8; WRITE_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total_bytes {
        stream.write_all(&chunk).expect("write to loopback");
        sent += WRITE_BYTES as u64;
    }
    drop(stream);
    let received = reader.join().expect("the reader thread");
    let elapsed = start.elapsed();
    assert_eq!(received, sent, "loopback lost bytes");
    elapsed
}

/// Round trips of `message_bytes`-byte messages to an echo server over loopback (both ends
/// with `TCP_NODELAY`), paced at `rate` per second as the end-to-end phase is, for `count`
/// trips after `warmup` unrecorded ones: the round-trip times in microseconds.
pub(crate) fn ping_pong(
    message_bytes: usize,
    rate: u32,
    warmup: u64,
    count: u64,
) -> Histogram<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let addr = listener.local_addr().expect("the listener's address");
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept the pinger");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut message = vec![0u8; message_bytes];
        while stream.read_exact(&mut message).is_ok() {
            stream.write_all(&message).expect("echo over loopback");
        }
    });
    let mut stream = TcpStream::connect(addr).expect("connect over loopback");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut message = vec![0x5au8; message_bytes];
    let mut round_trips = latency_histogram();
    let mut pacer = Pacer::new(rate);
    for trip in 0..warmup + count {
        pacer.wait_turn();
        let sent = Instant::now();
        stream.write_all(&message).expect("ping over loopback");
        stream.read_exact(&mut message).expect("pong over loopback");
        if trip >= warmup {
            round_trips.saturating_record(micros(sent.elapsed()));
        }
    }
    drop(stream);
    echo.join().expect("the echo thread");
    round_trips
}

/// A duration in whole microseconds, at least 1 (the histogram's lowest value).
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}
