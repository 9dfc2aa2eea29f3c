//! The outbox against real loopback sockets: direct writes, order, bounds, closing.

use super::*;
use std::io::Cursor;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::Control;

/// A connected pair of loopback sockets: the server's side (shared, as a session's) and the
/// client's.
async fn pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (Arc::new(accepted.unwrap().0), client.unwrap())
}

/// A pair with small kernel buffers (4 KiB asked to send and to receive; Linux doubles them),
/// so that a client that stops reading holds up the server's writes after a few frames.
async fn tight_pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpSocket::new_v4().unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    let client = client.connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    let socket = accepted.unwrap().0;
    socket2::SockRef::from(&socket)
        .set_send_buffer_size(4096)
        .unwrap();
    (Arc::new(socket), client.unwrap())
}

/// An idle outbox (its welcome written) on `socket`.
fn idle(socket: &Arc<TcpStream>, capacity: usize) -> Outbox {
    let outbox = Outbox::new(Some(socket.clone()), capacity, Counter::default());
    outbox.end_request();
    outbox
}

/// Writes what is queued as the connection's task does: when `ready`, a few frames at a time.
async fn write_as_the_task(outbox: &Outbox) {
    loop {
        outbox.ready().await.unwrap();
        if outbox.try_flush(4) == Flush::Done {
            return;
        }
    }
}

fn channel_frame(channel: &str, id: u64, text: &str) -> Outgoing {
    Outgoing::Channel {
        channel: Arc::from(channel),
        id: Some(MessageId::new(id, 0)),
        frame: WsFrame::text(text.to_owned()),
    }
}

/// Reads frames' payloads from the client side until `count` have arrived.
async fn read_texts(client: &mut TcpStream, count: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut texts = Vec::new();
    while texts.len() < count {
        let mut chunk = [0u8; 4096];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut chunk))
                .await
                .expect("frames in time")
                .unwrap();
        assert!(read > 0, "socket closed after {texts:?}");
        bytes.extend_from_slice(&chunk[..read]);
        loop {
            let mut cursor = Cursor::new(&bytes);
            let Some((header, length)) = FrameHeader::parse(&mut cursor).unwrap() else {
                break;
            };
            let start = cursor.position() as usize;
            let end = start + length as usize;
            if bytes.len() < end {
                break;
            }
            assert!(header.is_final && header.mask.is_none());
            texts.push(String::from_utf8(bytes[start..end].to_vec()).unwrap());
            bytes.drain(..end);
        }
    }
    texts
}

#[test]
fn a_text_frame_is_one_header_and_the_unmasked_payload() {
    for length in [0, 5, 125, 126, 200, 65_535, 70_000] {
        let text = "x".repeat(length);
        let frame = WsFrame::text(text.clone());
        let mut cursor = Cursor::new(frame.as_bytes());
        let (header, parsed) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!(header.opcode, OpCode::Data(Data::Text));
        assert!(header.is_final && header.mask.is_none());
        assert_eq!(parsed as usize, length);
        assert_eq!(
            &frame.as_bytes()[cursor.position() as usize..],
            text.as_bytes()
        );
    }
}

#[test]
fn a_close_frame_carries_its_code_then_its_reason() {
    let frame = WsFrame::close(1011, "internal error");
    let mut cursor = Cursor::new(frame.as_bytes());
    let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
    assert_eq!(header.opcode, OpCode::Control(Control::Close));
    assert!(header.is_final && header.mask.is_none());
    let payload = &frame.as_bytes()[cursor.position() as usize..];
    assert_eq!(payload.len() as u64, length);
    assert_eq!(payload[..2], 1011u16.to_be_bytes());
    assert_eq!(&payload[2..], b"internal error");
}

/// Delivers numbered 1000-byte frames to a client that does not read until the outbox refuses
/// one; returns how many it took and how many of those it queued.
fn fill(outbox: &Outbox) -> (u64, usize) {
    let body = "f".repeat(1000);
    let (mut sent, mut queued) = (0, 0);
    loop {
        match outbox.deliver(channel_frame("c", sent, &format!("{sent} {body}"))) {
            Delivered::Written => {}
            Delivered::Queued => queued += 1,
            Delivered::Full => return (sent, queued),
            Delivered::Closed => panic!("closed"),
        }
        sent += 1;
        assert!(sent < 100_000, "the socket never filled");
    }
}

#[tokio::test]
async fn a_delivery_to_an_idle_connection_is_written_at_once() {
    let (socket, mut client) = pair().await;
    let outbox = idle(&socket, 4);
    assert_eq!(
        outbox.deliver(channel_frame("c", 1, "hello")),
        Delivered::Written
    );
    assert_eq!(read_texts(&mut client, 1).await, ["hello"]);
}

#[tokio::test]
async fn the_welcome_and_a_requests_replies_go_before_what_arrives_meanwhile() {
    let (socket, mut client) = pair().await;
    let outbox = Outbox::new(Some(socket.clone()), 4, Counter::default());
    // Before the welcome is written, deliveries wait.
    assert_eq!(
        outbox.deliver(channel_frame("c", 1, "early")),
        Delivered::Queued
    );
    outbox.push_reply(WsFrame::text("welcome"));
    outbox.flush().await.unwrap();
    outbox.end_request();
    // Queued behind the welcome: no delivery overtakes it.
    assert_eq!(
        outbox.deliver(channel_frame("c", 2, "next")),
        Delivered::Queued
    );
    outbox.flush().await.unwrap();
    outbox.begin_request();
    assert_eq!(
        outbox.deliver(channel_frame("c", 3, "during")),
        Delivered::Queued
    );
    outbox.push_reply(WsFrame::text("reply"));
    outbox.flush().await.unwrap();
    outbox.end_request();
    outbox.flush().await.unwrap();
    assert_eq!(
        read_texts(&mut client, 5).await,
        ["welcome", "early", "next", "reply", "during"]
    );
}

#[tokio::test]
async fn leaving_and_replaying_take_out_only_what_arrived_during_the_request() {
    let (socket, mut client) = pair().await;
    let outbox = idle(&socket, 8);
    outbox.begin_request();
    outbox.deliver(channel_frame("left", 1, "left 1"));
    outbox.deliver(channel_frame("kept", 2, "kept 2"));
    outbox.deliver(channel_frame("joined", 3, "joined 3"));
    outbox.deliver(channel_frame("joined", 4, "joined 4"));
    outbox.forget_channel("left");
    outbox.forget_replayed("joined", MessageId::new(3, 0));
    outbox.end_request();
    outbox.flush().await.unwrap();
    assert_eq!(read_texts(&mut client, 2).await, ["kept 2", "joined 4"]);
    assert_eq!(outbox.state.lock().from_others, 0);
}

#[tokio::test]
async fn a_client_that_does_not_read_fills_the_queue_and_nothing_is_reordered() {
    let (socket, mut client) = pair().await;
    socket2::SockRef::from(&*socket)
        .set_send_buffer_size(4096)
        .unwrap();
    let capacity = 16;
    let outbox = idle(&socket, capacity);
    let (sent, queued) = fill(&outbox);
    assert_eq!(queued, capacity, "the queue holds exactly its capacity");
    // The client reads again: the task writes the rest, in order.
    let (_, texts) = tokio::join!(
        write_as_the_task(&outbox),
        read_texts(&mut client, sent as usize)
    );
    for (index, text) in texts.iter().enumerate() {
        assert!(
            text.starts_with(&format!("{index} ")),
            "frame {index}: {text:.20}"
        );
    }
    assert_eq!(
        outbox.deliver(channel_frame("c", 0, "after")),
        Delivered::Written
    );
}

#[tokio::test]
async fn a_closing_connection_refuses_deliveries_and_a_slow_ones_backlog_is_dropped() {
    let (socket, mut client) = pair().await;
    let outbox = idle(&socket, 8);
    outbox.begin_request();
    outbox.deliver(channel_frame("c", 1, "backlog"));
    outbox.deliver_last(WsFrame::text("kicked"));
    outbox.close(true);
    assert_eq!(
        outbox.deliver(channel_frame("c", 2, "late")),
        Delivered::Closed
    );
    outbox.push_reply(WsFrame::text("close"));
    outbox.flush().await.unwrap();
    assert_eq!(read_texts(&mut client, 1).await, ["close"]);
}

#[tokio::test]
async fn a_client_gone_fails_the_connection_once_not_in_a_loop() {
    let (socket, client) = pair().await;
    let outbox = idle(&socket, 4);
    drop(client);
    // The kernel takes the first writes; the peer's reset fails a later one.
    let gone = async {
        while outbox.deliver(channel_frame("c", 1, "anyone?")) != Delivered::Closed {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), gone)
        .await
        .expect("a write fails once the client is gone");
    // The task is told, and finds the connection failed even with nothing queued.
    outbox.ready().await.unwrap();
    assert_eq!(outbox.try_flush(64), Flush::Failed);
    assert!(outbox.flush().await.is_err());
}

#[tokio::test]
async fn a_requests_replies_and_what_arrived_meanwhile_go_out_in_one_flush() {
    let (socket, mut client) = pair().await;
    let outbox = idle(&socket, 4);
    outbox.begin_request();
    // The sender's own copy of its message arrives while its request is answered.
    assert_eq!(
        outbox.deliver(channel_frame("c", 1, "own copy")),
        Delivered::Queued
    );
    outbox.push_reply(WsFrame::text("ack"));
    outbox.finish_request().await.unwrap();
    // Both went out in the request's flush (not one now and one on a later wake-up).
    assert!(outbox.state.lock().queue.is_empty());
    assert_eq!(read_texts(&mut client, 2).await, ["ack", "own copy"]);
    assert_eq!(
        outbox.deliver(channel_frame("c", 2, "next")),
        Delivered::Written
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answers_holds_up_its_requests() {
    let (socket, mut client) = tight_pair().await;
    let outbox = idle(&socket, 4);
    // Until the socket is full and the queue too.
    let (sent, _) = fill(&outbox);
    // An answer larger than the kernel's buffers can take (they take a little more now and
    // then even from a client that reads nothing).
    let answer = "a".repeat(1 << 20);
    outbox.begin_request();
    outbox.push_reply(WsFrame::text(answer.clone()));
    let finish = outbox.finish_request();
    tokio::pin!(finish);
    // The request is not finished (the task reads nothing more) until the client reads.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), finish.as_mut())
            .await
            .is_err()
    );
    let (finished, texts) = tokio::join!(finish, read_texts(&mut client, sent as usize + 1));
    finished.unwrap();
    assert_eq!(texts.last(), Some(&answer));
}

#[tokio::test]
async fn once_the_replies_are_out_the_deliveries_behind_them_wait_for_the_socket() {
    let (socket, mut client) = tight_pair().await;
    let outbox = idle(&socket, 128);
    let body = "d".repeat(1000);
    outbox.begin_request();
    outbox.push_reply(WsFrame::text("ack"));
    // 96 KB arrive while the request is answered: more than the kernel takes from a client
    // that reads nothing.
    for id in 0..96 {
        outbox.deliver(channel_frame("c", id, &format!("{id} {body}")));
    }
    // The reply is written, so the request is finished, though the socket takes no more.
    tokio::time::timeout(std::time::Duration::from_secs(10), outbox.finish_request())
        .await
        .expect("finished once the reply is written")
        .unwrap();
    assert!(!outbox.state.lock().queue.is_empty());
    assert_eq!(outbox.state.lock().replies_waiting, 0);
    // The rest goes out through the task's `ready` (no wake-up needed) as the client reads.
    let (_, texts) = tokio::join!(write_as_the_task(&outbox), read_texts(&mut client, 97));
    assert_eq!(texts[0], "ack");
    for (index, text) in texts[1..].iter().enumerate() {
        assert!(text.starts_with(&format!("{index} ")), "frame {index}");
    }
}
