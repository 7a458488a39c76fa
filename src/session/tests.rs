//! The session's behaviour, driven by the pair harness with a fake clock: each case runs in
//! microseconds with no socket.

use super::pair::{client_close, client_frame, test_config, upgrade_request, Pair, Seen};
use super::Phase;
use crate::ws::OpCode;

#[test]
fn a_request_cut_at_every_point_is_answered_and_echoes() {
    let req = upgrade_request("/echo");
    for cut in 1..=req.len() {
        let mut p = Pair::new(test_config());
        let mut wire = req.clone();
        wire.extend(client_frame(true, OpCode::Text, b"hello"));
        p.send(&wire, &[cut]);
        let seen = p.received();
        assert!(matches!(seen[0], Seen::Http(101, _)), "cut {cut}: {seen:?}");
        assert_eq!(seen[1..], [Seen::Text("hello".into())], "cut {cut}");
        assert_eq!(p.session.phase(), Phase::Open);
    }
}

#[test]
fn fragmented_messages_are_reassembled_whatever_the_cuts() {
    let mut wire = client_frame(false, OpCode::Binary, &[1; 300]);
    wire.extend(client_frame(true, OpCode::Ping, b"p"));
    wire.extend(client_frame(false, OpCode::Continuation, &[2; 200]));
    wire.extend(client_frame(true, OpCode::Continuation, &[3; 100]));
    let mut want = vec![1u8; 300];
    want.extend([2; 200]);
    want.extend([3; 100]);
    for cuts in [&[1][..], &[2, 7], &[13], &[599, 1], &[]] {
        let mut p = Pair::new(test_config());
        p.open(&[]);
        p.send(&wire, cuts);
        let seen = p.received();
        // The pong is not shown; the message comes back whole, once.
        assert_eq!(seen, [Seen::Binary(want.clone())], "cuts {cuts:?}");
        assert_eq!(
            p.session.heap_bytes(),
            0,
            "nothing held after a whole message"
        );
    }
}

#[test]
fn a_slowloris_request_times_out_at_the_handshake_deadline_however_it_trickles() {
    let cfg = test_config();
    let mut p = Pair::new(cfg);
    let req = upgrade_request("/echo");
    // One byte per tick: never complete before the deadline.
    for (t, b) in req
        .iter()
        .take(cfg.handshake_ticks as usize - 1)
        .enumerate()
    {
        p.send(&[*b], &[]);
        p.advance(1);
        assert!(!p.closed, "closed early at tick {t}");
    }
    p.advance(1);
    assert!(
        p.closed,
        "the handshake deadline counts from accept, not from the last byte"
    );
    assert_eq!(p.metrics.handshake_timeouts.get(), 1);
    assert_eq!(p.metrics.aborted.get(), 1);
}

#[test]
fn garbage_gets_a_400_then_the_connection_lingers_and_goes() {
    let mut p = Pair::new(test_config());
    p.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    assert!(matches!(p.received()[0], Seen::Http(400, _)));
    assert!(p.fin, "the answer is followed by our FIN");
    assert_eq!(p.session.phase(), Phase::Lingering);
    p.send(b"more junk", &[]); // dropped while lingering
    p.end();
    assert!(p.closed);
    assert_eq!(
        p.metrics.aborted.get(),
        0,
        "a peer leaving after our answer is normal"
    );
}

#[test]
fn a_refused_upgrade_gets_its_status() {
    let mut p = Pair::new(test_config());
    p.host.refuse_path = Some("/private".into());
    p.send(&upgrade_request("/private"), &[]);
    assert!(matches!(p.received()[0], Seen::Http(403, _)));
    assert!(p.fin);
}

#[test]
fn heartbeat_pings_after_silence_and_idle_connections_are_closed() {
    let cfg = test_config();
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.advance(cfg.ping_ticks - 2);
    assert!(p.received().is_empty(), "no ping before the interval");
    p.advance(1);
    assert_eq!(p.received(), [Seen::Ping(vec![])]);
    assert_eq!(p.metrics.pings_sent.get(), 1);
    // Input (a pong, say) resets the clock.
    p.send(&client_frame(true, OpCode::Pong, b""), &[]);
    p.advance(cfg.idle_ticks - 1);
    assert_eq!(p.session.phase(), Phase::Open);
    p.advance(1);
    let seen = p.received();
    assert_eq!(
        seen.last(),
        Some(&Seen::Close(Some(1001), "idle timeout".into()))
    );
    assert_eq!(p.metrics.idle_timeouts.get(), 1);
    // It lingers for the peer's answer, bounded by the close deadline.
    assert_eq!(p.session.phase(), Phase::Lingering);
    p.advance(cfg.close_ticks);
    assert!(p.closed);
}

#[test]
fn the_peer_closing_gets_its_close_echoed_then_the_connection_closes() {
    let mut p = Pair::new(test_config());
    p.open(&[]);
    p.send(&client_close(1000, "bye"), &[3]);
    assert_eq!(p.received(), [Seen::Close(Some(1000), String::new())]);
    // Both Closes exchanged: closed at once (§5.5.1), no FIN wait, no reset.
    assert!(p.closed && !p.fin && !p.reset);
    assert_eq!(p.metrics.aborted.get(), 0);
}

#[test]
fn without_close_after_echo_the_echo_is_followed_by_fin_and_a_linger() {
    let mut cfg = test_config();
    cfg.close_after_echo = false; // TLS: close_notify goes out with the shutdown
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.send(&client_close(1000, "bye"), &[3]);
    assert_eq!(p.received(), [Seen::Close(Some(1000), String::new())]);
    assert!(p.fin && !p.closed);
    assert_eq!(p.session.phase(), Phase::Lingering);
    p.end();
    assert!(p.closed);
    assert_eq!(p.metrics.aborted.get(), 0);
}

#[test]
fn a_peer_that_vanishes_at_any_step_of_the_close_handshake_is_released() {
    let cfg = test_config();
    // After its Close, with our echo stalled, silent: the close deadline ends it.
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.stall = true;
    p.send(&client_close(1000, ""), &[]);
    assert_eq!(p.session.phase(), Phase::EchoingClose);
    p.advance(cfg.close_ticks);
    assert!(p.closed, "a Close echo the peer never reads is bounded");
    assert!(
        p.reset,
        "and the socket is reset, not left sending to a peer that does not read"
    );
    // Reset right after its Close.
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.send(&client_close(1000, ""), &[]);
    p.end();
    assert!(
        p.closed && !p.reset,
        "a peer that finished the close gets a clean close"
    );
    // Our Close (a drain), never answered.
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.server_close(1012, "drain");
    assert_eq!(p.session.phase(), Phase::AwaitingClose);
    p.advance(cfg.close_ticks - 1);
    assert!(!p.closed);
    p.advance(1);
    assert!(p.closed);
    // Our Close, answered: done at once, no FIN wait.
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.server_close(1012, "drain");
    p.send(&client_close(1012, ""), &[]);
    assert!(p.closed);
}

#[test]
fn a_slow_consumer_is_closed_with_1008_and_its_queue_dropped() {
    let mut cfg = test_config();
    cfg.max_outbound = 4096;
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.stall = true;
    // Echoes pile up behind a send the peer never completes.
    for _ in 0..10 {
        p.send(&client_frame(true, OpCode::Binary, &[7; 1000]), &[]);
    }
    assert_eq!(p.metrics.slow_consumers.get(), 1);
    assert_eq!(p.session.phase(), Phase::Finishing);
    assert!(
        p.session.queued() < 4096 + 1100,
        "the queue was dropped for the Close"
    );
    p.stall = false;
    p.release();
    let seen = p.received();
    assert_eq!(
        seen.last(),
        Some(&Seen::Close(Some(1008), "slow consumer".into()))
    );
    assert!(p.fin);
}

#[test]
fn a_protocol_error_closes_with_its_code() {
    let mut p = Pair::new(test_config());
    p.open(&[]);
    // An unmasked client frame breaks §5.1.
    let mut v = Vec::new();
    crate::ws::frame::encode_frame(&mut v, true, OpCode::Text, None, b"x");
    p.send(&v, &[]);
    assert_eq!(
        p.received(),
        [Seen::Close(Some(1002), "unmasked_client_frame".into())]
    );
    assert!(p.fin);
}

#[test]
fn a_message_over_the_limit_closes_with_1009() {
    let mut cfg = test_config();
    cfg.max_message = 1000;
    let mut p = Pair::new(cfg);
    p.open(&[]);
    p.send(&client_frame(true, OpCode::Binary, &[0; 1001]), &[]);
    assert!(matches!(p.received()[..], [Seen::Close(Some(1009), _)]));
}

#[test]
fn a_tls_client_hello_or_binary_garbage_is_refused_on_its_first_bytes() {
    // Issue 13 item 11: the server used to wait for a line end that never comes.
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let mut p = Pair::new(test_config());
    p.send(&hello, &[]);
    match &p.received()[0] {
        Seen::Http(400, head) => assert!(head.contains("400"), "{head}"),
        other => panic!("{other:?}"),
    }
    assert!(String::from_utf8_lossy(&p.wire).contains("speaks plain HTTP"));
    assert_eq!(
        p.metrics.handshake_failures[crate::ws::Error::ALL
            .iter()
            .position(|e| *e == crate::ws::Error::TlsOnPlainPort)
            .unwrap()]
        .get(),
        1
    );
    for garbage in [
        &b"\x00\x01\x02\x03"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b" GET / HTTP/1.1",
    ] {
        let mut p = Pair::new(test_config());
        p.send(garbage, &[1]);
        assert!(matches!(p.received()[0], Seen::Http(400, _)), "{garbage:?}");
    }
    // A method cut anywhere is not garbage yet; another method gets its 405 once complete.
    let mut p = Pair::new(test_config());
    p.send(b"PO", &[]);
    assert!(p.received().is_empty() && !p.fin);
    p.send(b"ST / HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    assert!(matches!(p.received()[0], Seen::Http(405, _)));
}

#[test]
fn pings_past_the_allowance_per_interval_close_the_connection() {
    // Issue 13 item 17: pings were answered without any bound.
    let cfg = test_config(); // max_pings 16
    let mut p = Pair::new(cfg);
    p.open(&[]);
    let pings: Vec<u8> = (0..16)
        .flat_map(|i| client_frame(true, OpCode::Ping, &[i]))
        .collect();
    p.send(&pings, &[]);
    assert_eq!(p.session.phase(), Phase::Open, "16 pings are answered");
    p.advance(1); // the heartbeat sweep's visit: a new allowance
    p.send(&pings, &[]);
    assert_eq!(p.session.phase(), Phase::Open);
    p.send(&client_frame(true, OpCode::Ping, b"x"), &[]);
    let seen = p.received();
    assert!(
        matches!(seen.last(), Some(Seen::Close(Some(1008), r)) if r.contains("ping flood")),
        "{seen:?}"
    );
    assert_eq!(p.metrics.ping_floods.get(), 1);
}

#[test]
fn shedding_drops_what_a_session_holds_and_says_which_code() {
    // Issue 13 item 9: the memory budget closes its largest holders.
    let mut p = Pair::new(test_config());
    p.open(&[]);
    p.send(&client_frame(false, OpCode::Binary, &[7; 10_000]), &[]);
    let (partial, _) = p.session.held();
    assert!(partial >= 10_000, "a partial message is held: {partial}");
    assert_eq!(p.shed(), Some(crate::budget::Shed::Partial));
    assert_eq!(
        p.session.held().0,
        0,
        "the partial message is dropped at once"
    );
    let seen = p.received();
    assert!(
        matches!(seen.last(), Some(Seen::Close(Some(1009), _))),
        "{seen:?}"
    );
    assert_eq!(p.shed(), None, "only open sessions are shed");

    let mut p = Pair::new(test_config());
    p.open(&[]);
    p.stall = true; // the peer stops reading: echoes queue up
    for _ in 0..4 {
        p.send(&client_frame(true, OpCode::Binary, &[1; 8_000]), &[]);
    }
    let queued = p.session.held().1;
    assert!(queued > 16_000, "{queued}");
    assert_eq!(p.shed(), Some(crate::budget::Shed::Outbound));
    assert!(
        p.session.held().1 < queued / 2,
        "the queue is discarded (the send in flight stays)"
    );
    p.stall = false;
    p.release();
    let seen = p.received();
    assert!(
        matches!(seen.last(), Some(Seen::Close(Some(1013), _))),
        "{seen:?}"
    );
    assert_eq!(p.metrics.memory_sheds.get(), 1);
}

// Issue 18: what a traced connection's close log line says.

#[test]
fn the_trace_counts_messages_each_way_and_names_the_clients_close() {
    let mut p = Pair::new(test_config());
    p.open(&[]);
    p.send(&client_frame(true, OpCode::Text, b"one"), &[]);
    p.send(&client_frame(true, OpCode::Binary, b"two"), &[]);
    p.send(&client_close(4001, "bye now"), &[]);
    assert_eq!(p.trace.messages_in.get(), 2);
    assert_eq!(p.trace.messages_out.get(), 2, "the echoes");
    assert_eq!(
        p.trace.ended(),
        Some(super::End::Close {
            side: crate::metrics::Side::Client,
            code: 4001,
            reason: "bye now".into()
        })
    );
}

#[test]
fn the_trace_names_the_servers_close_and_keeps_it_through_the_reset() {
    let mut p = Pair::new(test_config());
    p.open(&[]);
    p.server_close(1012, "draining");
    p.advance(test_config().close_ticks + 1); // the peer never answers: reset
    assert!(p.closed);
    assert_eq!(
        p.trace.ended(),
        Some(super::End::Close {
            side: crate::metrics::Side::Server,
            code: 1012,
            reason: "draining".into()
        })
    );
}

#[test]
fn the_trace_names_refusals_timeouts_and_peers_that_leave() {
    let mut p = Pair::new(test_config());
    p.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    assert!(matches!(
        p.trace.ended(),
        Some(super::End::Refused {
            status: 400,
            limit: None,
            ..
        })
    ));

    let mut p = Pair::new(test_config());
    p.host.refuse_path = Some("/echo".into());
    p.send(&upgrade_request("/echo"), &[]);
    assert!(matches!(
        p.trace.ended(),
        Some(super::End::Refused { status: 403, limit: Some(_), ref reason }) if reason == "no"
    ));

    let mut p = Pair::new(test_config());
    p.advance(test_config().handshake_ticks);
    assert_eq!(
        p.trace.ended(),
        Some(super::End::Abort {
            side: crate::metrics::Side::Server,
            reason: "handshake timeout"
        })
    );

    let mut p = Pair::new(test_config());
    p.open(&[]);
    p.end();
    assert!(matches!(
        p.trace.ended(),
        Some(super::End::Abort {
            side: crate::metrics::Side::Client,
            ..
        })
    ));
}

#[test]
fn a_calls_body_cut_at_every_point_is_answered_whole_and_what_follows_is_dropped() {
    let body = b"{\"hello\":\"world\"}";
    let mut req = format!(
        "POST /call HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    for cut in 1..req.len() {
        let mut p = Pair::new(test_config());
        let mut wire = req.clone();
        wire.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n"); // pipelined: not served
                                                               // Two reads: the second ends the body and carries the next request with it.
        p.send(&wire, &[cut, wire.len()]);
        let seen = p.received();
        match &seen[0] {
            Seen::Http(200, head) => assert!(
                head.contains("Connection: close"),
                "cut {cut}: pipelined, so not kept: {head}"
            ),
            other => panic!("cut {cut}: {other:?}"),
        }
        assert!(
            p.wire.ends_with(body),
            "cut {cut}: the body comes back whole"
        );
        assert_eq!(p.host.requests, ["/call"], "cut {cut}");
        assert_eq!(
            p.answers, 0,
            "cut {cut}: what followed was never read as a request"
        );
        assert_eq!(p.session.phase(), Phase::Lingering, "cut {cut}");
    }
}

/// `POST /call` with `body`, as one request.
fn call(body: &str) -> Vec<u8> {
    format!(
        "POST /call HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_kept_alive_connection_serves_the_next_request_after_each_answer() {
    let mut p = Pair::new(test_config());
    for i in 0..3 {
        let body = format!("call {i}");
        p.send(&call(&body), &[7]);
        assert!(p.wire.ends_with(body.as_bytes()), "{i}");
        assert_eq!(
            p.session.phase(),
            Phase::Handshake,
            "{i}: waiting for the next"
        );
        assert_eq!((p.answers, p.session.heap_bytes()), (i + 1, 0), "{i}");
    }
    let text = String::from_utf8_lossy(&p.wire).into_owned();
    assert_eq!(text.matches("Connection: keep-alive").count(), 3, "{text}");
    assert_eq!(p.metrics.keepalive_reuses.get(), 3);
    // The same connection upgrades and echoes.
    p.send(&upgrade_request("/echo"), &[]);
    assert!(String::from_utf8_lossy(&p.wire).contains("101 Switching Protocols"));
    assert_eq!(p.session.phase(), Phase::Open);
    let before = p.wire.len();
    p.send(&client_frame(true, OpCode::Text, b"hi"), &[]);
    assert!(p.wire.len() > before && p.wire.ends_with(b"hi"));
}

#[test]
fn a_preflight_keeps_its_connection_for_the_request_it_clears() {
    let preflight = |extra: &str| {
        format!("OPTIONS /call HTTP/1.1\r\nHost: x\r\nOrigin: https://app\r\n{extra}\r\n")
            .into_bytes()
    };
    let mut p = Pair::new(test_config());
    p.send(&preflight(""), &[]);
    let text = String::from_utf8_lossy(&p.wire).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 204") && text.contains("Connection: keep-alive"),
        "{text}"
    );
    assert_eq!(
        (p.session.phase(), p.answers, p.fin),
        (Phase::Handshake, 1, false),
        "waiting for the request it cleared"
    );
    // The request it cleared, on the same connection, then another.
    p.send(&call("after"), &[7]);
    assert!(p.wire.ends_with(b"after"));
    assert_eq!((p.session.phase(), p.answers), (Phase::Handshake, 2));
    assert_eq!(
        (p.metrics.preflights.get(), p.metrics.keepalive_reuses.get()),
        (1, 2)
    );
    // `Connection: close`, HTTP/1.0 and pipelined bytes: answered, then the end.
    for (req, why) in [
        (preflight("Connection: close\r\n"), "close"),
        (
            String::from_utf8(preflight(""))
                .unwrap()
                .replace("HTTP/1.1", "HTTP/1.0")
                .into_bytes(),
            "1.0",
        ),
        ([preflight(""), call("x")].concat(), "pipelined"),
    ] {
        let mut p = Pair::new(test_config());
        p.send(&req, &[]);
        let text = String::from_utf8_lossy(&p.wire).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 204") && text.contains("Connection: close"),
            "{why}: {text}"
        );
        assert!(p.fin && p.answers == 0, "{why}: closed after it");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{why}: one answer");
    }
}

#[test]
fn a_kept_connection_idle_past_the_handshake_deadline_ends_quietly() {
    let mut p = Pair::new(test_config());
    p.send(&call("x"), &[]);
    let sent = p.wire.len();
    p.advance(p.cfg.handshake_ticks - 1);
    assert!(!p.closed, "not before its deadline");
    p.advance(1);
    assert!(p.closed && !p.reset, "closed, not reset");
    assert_eq!(p.wire.len(), sent, "no bytes: no answer was owed");
    assert_eq!(p.metrics.keepalive_ends.get(), 1);
    assert_eq!(
        p.metrics.handshake_timeouts.get(),
        0,
        "not a handshake that failed"
    );
    // The same deadline with part of a request in: a handshake timeout, as for a first one.
    let mut p = Pair::new(test_config());
    p.send(&call("x"), &[]);
    p.send(b"POST /call HTTP/1.1\r\n", &[]);
    p.advance(p.cfg.handshake_ticks);
    assert!(p.closed);
    assert_eq!(p.metrics.handshake_timeouts.get(), 1);
}

#[test]
fn the_allowance_and_a_clients_close_end_keep_alive() {
    let mut cfg = test_config();
    cfg.keepalive_requests = 2;
    let mut p = Pair::new(cfg);
    p.send(&call("one"), &[]);
    p.send(&call("two"), &[]);
    let text = String::from_utf8_lossy(&p.wire).into_owned();
    assert_eq!(text.matches("Connection: keep-alive").count(), 1, "{text}");
    assert!(text.contains("Connection: close") && p.fin, "{text}");
    assert_eq!(p.answers, 1);
    let mut p = Pair::new(test_config());
    let mut req = call("bye");
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    req.splice(at + 2..at + 2, b"Connection: close\r\n".iter().copied());
    p.send(&req, &[]);
    assert!(String::from_utf8_lossy(&p.wire).contains("Connection: close") && p.fin);
    // A client closing its idle kept connection: a normal end, not an abort.
    let mut p = Pair::new(test_config());
    p.send(&call("x"), &[]);
    p.end();
    assert!(p.closed);
    assert_eq!(
        (p.metrics.keepalive_ends.get(), p.metrics.aborted.get()),
        (1, 0)
    );
}

#[test]
fn bytes_that_arrive_while_the_answer_goes_out_end_the_connection_after_it() {
    let mut p = Pair::new(test_config());
    p.stall = true;
    p.send(&call("slow"), &[]);
    assert!(p.inflight.is_some(), "the answer is going out");
    p.send(b"GET /next HTTP/1.1\r\n\r\n", &[]);
    p.release();
    assert!(p.wire.ends_with(b"slow") && p.fin, "answered, then our FIN");
    assert_eq!(p.answers, 0, "the bytes were not read as a request");
    assert_eq!(p.session.phase(), Phase::Lingering);
}

#[test]
fn a_body_over_the_message_limit_is_refused_on_the_head_alone() {
    let mut p = Pair::new(test_config());
    let head = format!(
        "POST /call HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        p.cfg.max_message as usize + 1
    );
    p.send(head.as_bytes(), &[]);
    assert!(matches!(p.received()[0], Seen::Http(413, _)));
    assert_eq!(p.session.heap_bytes(), 0, "nothing held for the body");
    assert!(p.host.requests.is_empty(), "the service never saw it");
}

#[test]
fn a_body_still_arriving_is_held_as_it_comes_and_shed_with_a_503() {
    let mut p = Pair::new(test_config());
    let len = p.cfg.max_message as usize;
    assert!(len > 30_000, "{len}");
    let head = format!("POST /call HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n0123456789");
    p.send(head.as_bytes(), &[]);
    let (partial, _) = p.session.held();
    assert!(
        partial < len / 2,
        "nothing reserved for the announced length: {partial}"
    );
    p.send(&[b'x'; 20_000], &[]);
    assert!(p.session.held().0 >= 20_000, "what arrived is held");
    assert_eq!(p.shed(), Some(crate::budget::Shed::Partial));
    assert_eq!(p.session.held().0, 0);
    assert!(matches!(p.received()[0], Seen::Http(503, _)));
    assert!(p.host.requests.is_empty(), "the service never saw it");
}

#[test]
fn an_http_1_0_call_is_answered_and_closes_its_connection() {
    let mut p = Pair::new(test_config());
    let req = String::from_utf8(call("old"))
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    p.send(req.as_bytes(), &[]);
    let text = String::from_utf8_lossy(&p.wire).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Connection: close") && text.ends_with("old"),
        "{text}"
    );
    assert!(p.fin && p.answers == 0, "answered, then the end");
    // An upgrade still needs HTTP/1.1.
    let mut p = Pair::new(test_config());
    let up = String::from_utf8(upgrade_request("/echo"))
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    p.send(up.as_bytes(), &[]);
    assert!(matches!(p.received()[0], Seen::Http(505, _)));
}
