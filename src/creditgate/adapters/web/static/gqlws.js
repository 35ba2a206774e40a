// A small client of the graphql-transport-ws protocol (the `graphql-ws` library's), for the portal
// and GraphiQL. Credentials travel in the connection_init payload (docs/semantics.md §10).
//
//   const client = CreditgateWs.connect({url, connectionParams, onState});
//   const sub = client.subscribe({query, variables}, {next, error, complete});
//   sub.unsubscribe(); client.close();
//
// onState(state, detail) reports "connecting", "live", "retrying" (lost, will reconnect and
// re-subscribe), "refused" (close 4403: bad or expired credentials; no retry) and "unavailable"
// (the server does not speak the protocol or keeps failing; retried slowly).
(function (global) {
  'use strict';

  const PROTOCOL = 'graphql-transport-ws';
  const FATAL = new Set([4400, 4401, 4403, 4406, 4409, 4429]);

  function wsUrl(path) {
    const url = new URL(path, global.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.toString();
  }

  function connect(options) {
    const url = options.url || wsUrl('graphql');
    const onState = options.onState || function () {};
    const subs = new Map(); // id -> {payload, sink}
    let socket = null;
    let acked = false;
    let closed = false;
    let failures = 0;
    let nextId = 1;
    let timer = null;

    function send(message) {
      if (socket && socket.readyState === 1) socket.send(JSON.stringify(message));
    }

    function open() {
      clearTimeout(timer);
      if (closed) return;
      onState('connecting');
      acked = false;
      let opened = false;
      const ws = (socket = new WebSocket(url, PROTOCOL));
      ws.onopen = function () {
        opened = true;
        const params = typeof options.connectionParams === 'function'
          ? options.connectionParams() : (options.connectionParams || {});
        ws.send(JSON.stringify({type: 'connection_init', payload: params}));
      };
      ws.onmessage = function (event) {
        let msg;
        try { msg = JSON.parse(event.data); } catch (e) { ws.close(4400, 'Invalid message'); return; }
        const sub = msg.id !== undefined ? subs.get(msg.id) : undefined;
        switch (msg.type) {
          case 'connection_ack':
            acked = true;
            failures = 0;
            onState('live');
            for (const [id, s] of subs) send({id: id, type: 'subscribe', payload: s.payload});
            break;
          case 'ping':
            send({type: 'pong', payload: msg.payload});
            break;
          case 'next':
            if (sub) sub.sink.next(msg.payload);
            break;
          case 'error':
            if (sub) { subs.delete(msg.id); sub.sink.error(msg.payload); }
            break;
          case 'complete':
            if (sub) { subs.delete(msg.id); if (sub.sink.complete) sub.sink.complete(); }
            break;
        }
      };
      ws.onclose = function (event) {
        if (socket !== ws) return;
        socket = null;
        if (closed) return;
        if (FATAL.has(event.code)) {
          closed = true;
          onState(event.code === 4403 ? 'refused' : 'unavailable', {code: event.code, reason: event.reason});
          return;
        }
        failures += 1;
        // Never opened (handshake refused) or failing again and again: the server may lack the
        // protocol; keep trying, slowly. A lost live connection comes back quickly.
        const unavailable = !opened || !acked || failures > 3;
        onState(unavailable ? 'unavailable' : 'retrying', {code: event.code, reason: event.reason});
        const delay = Math.min(30000, 1000 * Math.pow(2, Math.min(failures, 5)));
        timer = setTimeout(open, unavailable ? Math.max(delay, 5000) : delay);
      };
    }

    open();

    return {
      subscribe: function (payload, sink) {
        const id = String(nextId++);
        subs.set(id, {payload: payload, sink: sink});
        if (acked) send({id: id, type: 'subscribe', payload: payload});
        return {
          unsubscribe: function () {
            if (subs.delete(id) && acked) send({id: id, type: 'complete'});
          },
        };
      },
      close: function () {
        closed = true;
        clearTimeout(timer);
        if (socket) socket.close(1000, 'Normal Closure');
        socket = null;
      },
    };
  }

  global.CreditgateWs = {connect: connect, wsUrl: wsUrl, PROTOCOL: PROTOCOL};
})(window);
