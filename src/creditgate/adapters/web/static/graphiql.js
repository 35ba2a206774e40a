// GraphiQL for creditgate: queries and mutations over HTTP, subscriptions over graphql-transport-ws.
// The headers editor carries the API key or subject token; GraphiQL keeps headers in memory only
// unless the user turns on "persist headers" in its settings.
(function () {
  'use strict';

  const endpoint = new URL('graphql', window.location.href).toString();
  const httpFetcher = GraphiQL.createFetcher({url: endpoint});

  function isSubscription(params, opts) {
    const doc = opts && opts.documentAST;
    if (!doc) return /^\s*subscription\b/m.test(params.query.replace(/#.*$/gm, ''));
    return doc.definitions.some(function (d) {
      return d.kind === 'OperationDefinition' && d.operation === 'subscription' &&
        (!params.operationName || (d.name && d.name.value === params.operationName));
    });
  }

  function authorization(headers) {
    for (const name of Object.keys(headers || {})) {
      if (name.toLowerCase() === 'authorization') return headers[name];
    }
    return undefined;
  }

  // The updates of one subscription as an async iterable, which GraphiQL renders as they come.
  function subscribe(params, headers) {
    const queue = [];
    let wake = null;
    let done = false;
    const push = function (item) { queue.push(item); if (wake) { wake(); wake = null; } };
    const auth = authorization(headers);
    const client = CreditgateWs.connect({
      url: CreditgateWs.wsUrl('graphql'),
      connectionParams: auth ? {Authorization: auth} : {},
      onState: function (state, detail) {
        if (state === 'refused' || state === 'unavailable') {
          const code = detail && detail.code;
          push({errors: [{message: 'subscription ' + state + (code ? ' (close code ' + code + ')' : '')}]});
          push(null);
        }
      },
    });
    client.subscribe({query: params.query, variables: params.variables, operationName: params.operationName}, {
      next: push,
      error: function (errors) { push({errors: errors}); push(null); },
      complete: function () { push(null); },
    });
    return {
      [Symbol.asyncIterator]: function () { return this; },
      next: async function () {
        while (!done) {
          if (queue.length) {
            const item = queue.shift();
            if (item === null) break;
            return {value: item, done: false};
          }
          await new Promise(function (resolve) { wake = resolve; });
        }
        done = true;
        client.close();
        return {value: undefined, done: true};
      },
      return: async function () {
        done = true;
        client.close();
        return {value: undefined, done: true};
      },
    };
  }

  function fetcher(params, opts) {
    if (isSubscription(params, opts)) return subscribe(params, opts && opts.headers);
    return httpFetcher(params, opts);
  }

  // GraphiQL's history keeps each run's headers in localStorage even when headers are not to be
  // persisted: this storage drops them (and any in saved tabs) unless "persist headers" is on.
  function withoutHeaders(value) {
    if (Array.isArray(value)) return value.map(withoutHeaders);
    if (!value || typeof value !== 'object') return value;
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = k === 'headers' ? null : withoutHeaders(v);
    return out;
  }
  const storage = {
    getItem: (key) => localStorage.getItem(key),
    setItem: function (key, value) {
      if (localStorage.getItem('graphiql:shouldPersistHeaders') !== 'true' && /:(queries|tabState)$/.test(key)) {
        try { value = JSON.stringify(withoutHeaders(JSON.parse(value))); } catch (e) { return; }
      }
      localStorage.setItem(key, value);
    },
    removeItem: (key) => localStorage.removeItem(key),
    clear: function () {
      for (const key of Object.keys(localStorage)) if (key.startsWith('graphiql:')) localStorage.removeItem(key);
    },
    get length() { return Object.keys(localStorage).filter((k) => k.startsWith('graphiql:')).length; },
  };

  const root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    storage: storage,
    defaultHeaders: '{\n  "Authorization": "Bearer <API key or subject token>"\n}',
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: 'headers',
    defaultQuery: '# creditgate: put your API key or subject token in the Headers tab below.\n' +
      '{\n  features {\n    key\n    name\n  }\n}\n',
  }));
})();
