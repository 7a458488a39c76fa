// uWebSockets peer for holdfast-bench side-by-side runs (ours; the library is theirs:
// built from a uWebSockets source directory given with --uws-src, epoll, one thread as
// uWS's own examples run it). Built twice: without TLS (LIBUS_NO_SSL, every section), and
// with OpenSSL's API (LIBUS_USE_OPENSSL: the system's OpenSSL, or BoringSSL with
// --uws-boringssl; the TLS section), where CERT and KEY (PEM files) make the WebSocket port
// an SSLApp: wss://, the library's defaults as uSockets sets them (TLS 1.2+, session tickets
// on).
//
// It speaks what the bench's workloads need, like the tokio-tungstenite peers:
// - any path but /ws: echo every message back (text stays text, binary stays binary);
// - GET /ws?topics=a,b: subscribe; answers {"type":"subscribed","topic":T,"seq":N} per
//   topic;
// - POST /publish?topic=T on the admin port (keep-alive): numbers the body per topic and
//   publishes the binary frame [len u8][topic][seq u64 BE][body] with uWS's own pub/sub
//   (one encode per message, shared by every subscriber), answering {"seq":N};
// - {"op":"publish","topic":T,"data":"STAMP"} on /ws: the same, from a client socket.
// Prints "admin listening on ADDR" and "listening on ADDR" (port 0: any). The admin port is
// plain HTTP in both builds.
//
// Usage: uws-peer [PORT] [ADMIN_PORT] [CERT KEY]

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

struct PerSocket {
    std::vector<std::string> topics;
};

static std::map<std::string, unsigned long long, std::less<>> seqs;

static std::vector<std::string> topics_of(std::string_view query) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at <= query.size()) {
        size_t end = query.find('&', at);
        if (end == std::string_view::npos) end = query.size();
        std::string_view kv = query.substr(at, end - at);
        if (kv.substr(0, 7) == "topics=") {
            std::string_view list = kv.substr(7);
            size_t s = 0;
            while (s <= list.size()) {
                size_t e = list.find(',', s);
                if (e == std::string_view::npos) e = list.size();
                if (e > s) out.emplace_back(list.substr(s, e - s));
                s = e + 1;
            }
        }
        at = end + 1;
    }
    return out;
}

// The WebSocket app (plain or TLS) with its echo and pub/sub routes, the admin app
// publishing through it; runs until killed.
template <bool SSL> static void serve(uWS::TemplatedApp<SSL> &app, int port, int admin_port) {
    using App = uWS::TemplatedApp<SSL>;
    typename App::template WebSocketBehavior<PerSocket> echo = {};
    echo.compression = uWS::DISABLED;
    echo.maxPayloadLength = 16 * 1024 * 1024;
    echo.maxBackpressure = 1024 * 1024;
    echo.idleTimeout = 0;
    echo.message = [](auto *ws, std::string_view message, uWS::OpCode op) {
        ws->send(message, op);
    };
    typename App::template WebSocketBehavior<PerSocket> pubsub = {};
    pubsub.compression = uWS::DISABLED;
    pubsub.maxPayloadLength = 16 * 1024 * 1024;
    pubsub.maxBackpressure = 1024 * 1024;
    pubsub.idleTimeout = 0;
    pubsub.upgrade = [](auto *res, auto *req, auto *context) {
        PerSocket data;
        data.topics = topics_of(req->getQuery());
        res->template upgrade<PerSocket>(std::move(data), req->getHeader("sec-websocket-key"),
                                         req->getHeader("sec-websocket-protocol"),
                                         req->getHeader("sec-websocket-extensions"), context);
    };
    pubsub.open = [](auto *ws) {
        for (auto &t : ws->getUserData()->topics) {
            ws->subscribe(t);
            auto it = seqs.find(t);
            unsigned long long seq = it == seqs.end() ? 0 : it->second;
            std::string reply = "{\"type\":\"subscribed\",\"topic\":\"" + t +
                                "\",\"seq\":" + std::to_string(seq) + "}";
            ws->send(reply, uWS::OpCode::TEXT);
        }
    };
    // {"op":"publish","topic":T,"data":"STAMP"} from a client (the loadgen's
    // --publish-via ws): numbered and published as the text frame holdfast sends for a
    // client's text publish, {"data":D,"seq":N,"topic":T,"type":"message"} (same bytes,
    // same parsing cost for the clients), answered {"type":"published","topic":T,"seq":N}
    // — uWebSockets' own pub/sub driven from a socket.
    pubsub.message = [&app](auto *ws, std::string_view m, uWS::OpCode) {
        auto field = [&m](std::string_view key) -> std::string_view {
            size_t at = m.find(key);
            if (at == std::string_view::npos) return {};
            at += key.size();
            size_t end = m.find('"', at);
            if (end == std::string_view::npos) return {};
            return m.substr(at, end - at);
        };
        if (m.find("\"op\":\"publish\"") == std::string_view::npos) return;
        std::string topic(field("\"topic\":\""));
        std::string data(field("\"data\":\""));
        unsigned long long seq = ++seqs[topic];
        std::string msg = "{\"data\":\"" + data + "\",\"seq\":" + std::to_string(seq) +
                          ",\"topic\":\"" + topic + "\",\"type\":\"message\"}";
        app.publish(topic, msg, uWS::OpCode::TEXT, false);
        ws->send("{\"type\":\"published\",\"topic\":\"" + topic + "\",\"seq\":" +
                     std::to_string(seq) + "}",
                 uWS::OpCode::TEXT);
    };
    app.template ws<PerSocket>("/ws", std::move(pubsub));
    app.template ws<PerSocket>("/*", std::move(echo));

    uWS::App admin;
    admin.post("/publish", [&app](auto *res, auto *req) {
        std::string topic;
        std::string_view q = req->getQuery("topic");
        topic.assign(q.data(), q.size());
        auto body = std::make_shared<std::string>();
        res->onAborted([]() {});
        res->onData([&app, res, topic, body](std::string_view chunk, bool last) {
            body->append(chunk.data(), chunk.size());
            if (!last) return;
            unsigned long long seq = ++seqs[topic];
            std::string frame;
            frame.reserve(1 + topic.size() + 8 + body->size());
            frame.push_back((char)topic.size());
            frame += topic;
            for (int i = 7; i >= 0; i--) frame.push_back((char)((seq >> (8 * i)) & 0xff));
            frame += *body;
            app.publish(topic, frame, uWS::OpCode::BINARY, false);
            res->end("{\"seq\":" + std::to_string(seq) + "}");
        });
    });
    admin.listen("127.0.0.1", admin_port, [](auto *ls) {
        if (!ls) {
            fprintf(stderr, "uws-peer: cannot listen (admin)\n");
            exit(1);
        }
        printf("admin listening on 127.0.0.1:%d\n",
               us_socket_local_port(false, (struct us_socket_t *)ls));
        fflush(stdout);
    });
    app.listen("127.0.0.1", port, [](auto *ls) {
        if (!ls) {
            fprintf(stderr, "uws-peer: cannot listen\n");
            exit(1);
        }
        printf("listening on 127.0.0.1:%d\n",
               us_socket_local_port(SSL, (struct us_socket_t *)ls));
        fflush(stdout);
    });
    app.run();
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int admin_port = argc > 2 ? atoi(argv[2]) : 0;
    if (argc > 4) {
#ifdef LIBUS_USE_OPENSSL
        uWS::SocketContextOptions tls = {};
        tls.cert_file_name = argv[3];
        tls.key_file_name = argv[4];
        uWS::SSLApp app(tls);
        if (app.constructorFailed()) {
            fprintf(stderr, "uws-peer: cannot load %s / %s\n", argv[3], argv[4]);
            return 1;
        }
        serve(app, port, admin_port);
        return 0;
#else
        fprintf(stderr, "uws-peer: built without TLS (LIBUS_NO_SSL)\n");
        return 1;
#endif
    }
    uWS::App app;
    serve(app, port, admin_port);
}
