#!/usr/bin/env node
// pinhole lab: serves phone.html on loopback, runs it in headless Chromium and
// prints what the page reports ("page: EVENT DETAIL" lines), the page's
// console ("console: ..."), and takes screenshots over the DevTools protocol.
//
//   node run.js --ws ws://198.18.0.1:8080 --uri sip:alice@198.18.0.1 \
//       --out DIR [--port 8088] [--chromium /usr/bin/chromium] [--name NAME]
//       [--mode busy|answer|call] [--target URI] [--stun stun:HOST:PORT]
//       [--busy 486] [--secs 4] [--spki HASH]
//
// --spki: the base64 SHA-256 of the server certificate's public key, which
// Chromium then accepts for wss: without a CA of its own (only that key).
// The options other than out, port, chromium and name go to the page as its
// query (phone.html says what they mean).
// A screenshot (DIR/NAME.png, NAME browser by default) is taken after each "ended" event and when
// the process gets SIGTERM (then it exits). Needs the npm packages of
// package.json (ws) and jssip.bundle.js (npm run bundle).
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const {spawn} = require('child_process');
const WebSocket = require('ws');

const args = {port: '8088', chromium: 'chromium', name: 'browser'};
for (let i = 2; i < process.argv.length; i += 2)
	args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const k of ['ws', 'uri', 'out'])
	if (!args[k]) {
		console.error(`run.js: --${k} is required`);
		process.exit(2);
	}

const here = __dirname;
const files = {
	'/phone.html': ['phone.html', 'text/html'],
	'/jssip.bundle.js': ['jssip.bundle.js', 'application/javascript'],
};

const server = http.createServer((req, res) => {
	const url = new URL(req.url, 'http://x');
	if (req.method === 'POST' && url.pathname === '/report') {
		let body = '';
		req.on('data', (d) => { body += d; if (body.length > 65536) req.destroy(); });
		req.on('end', () => {
			console.log('page: ' + body.replace(/[\r\n]+/g, ' '));
			if (body.startsWith('ended') || body.startsWith('media'))
				screenshot().catch((e) => console.log('screenshot failed: ' + e.message));
			res.end('ok');
		});
		return;
	}
	const f = files[url.pathname];
	if (!f) {
		res.statusCode = 404;
		return res.end();
	}
	res.setHeader('Content-Type', f[1]);
	fs.createReadStream(path.join(here, f[0])).pipe(res);
});

let chrome, cdp, sessionId, nextId = 1;
const pending = new Map();

function send(method, params, sid) {
	return new Promise((resolve, reject) => {
		const id = nextId++;
		pending.set(id, {resolve, reject});
		cdp.send(JSON.stringify({id, method, params: params || {}, sessionId: sid}));
	});
}

async function screenshot() {
	if (!sessionId)
		return;
	const r = await send('Page.captureScreenshot', {format: 'png'}, sessionId);
	const f = path.join(args.out, args.name + '.png');
	fs.writeFileSync(f, Buffer.from(r.data, 'base64'));
	console.log('screenshot: ' + f);
}

async function devtools(wsUrl) {
	cdp = new WebSocket(wsUrl, {perMessageDeflate: false});
	await new Promise((ok, ko) => { cdp.on('open', ok); cdp.on('error', ko); });
	cdp.on('message', (data) => {
		const m = JSON.parse(data);
		if (m.id && pending.has(m.id)) {
			const p = pending.get(m.id);
			pending.delete(m.id);
			return m.error ? p.reject(new Error(m.error.message)) : p.resolve(m.result);
		}
		if (m.method === 'Runtime.consoleAPICalled')
			console.log('console: ' + m.params.args.map((a) => a.value).join(' '));
		if (m.method === 'Runtime.exceptionThrown')
			console.log('exception: ' + JSON.stringify(m.params.exceptionDetails).slice(0, 500));
	});
	const query = {};
	for (const [k, v] of Object.entries(args))
		if (!['out', 'port', 'chromium', 'name', 'spki'].includes(k))
			query[k] = v;
	const page = `http://127.0.0.1:${args.port}/phone.html?` + new URLSearchParams(query);
	const {targetId} = await send('Target.createTarget', {url: 'about:blank'});
	({sessionId} = await send('Target.attachToTarget', {targetId, flatten: true}));
	await send('Runtime.enable', {}, sessionId);
	await send('Page.enable', {}, sessionId);
	await send('Emulation.setDeviceMetricsOverride',
		{width: 900, height: 600, deviceScaleFactor: 1, mobile: false}, sessionId);
	await send('Page.navigate', {url: page}, sessionId);
	console.log('loaded: ' + page);
}

async function main() {
	await new Promise((ok) => server.listen(parseInt(args.port, 10), '127.0.0.1', ok));
	const profile = fs.mkdtempSync(path.join(args.out, args.name + '-chromium-'));
	chrome = spawn(args.chromium, [
		'--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
		'--disable-dev-shm-usage', '--use-fake-ui-for-media-stream',
		'--use-fake-device-for-media-stream', '--remote-debugging-port=0',
		'--user-data-dir=' + profile,
		...(args.spki ? ['--ignore-certificate-errors-spki-list=' + args.spki] : []),
		'about:blank',
	], {stdio: ['ignore', 'ignore', 'pipe']});
	let err = '';
	const wsUrl = await new Promise((ok, ko) => {
		chrome.stderr.on('data', (d) => {
			err += d;
			const m = /DevTools listening on (ws:\S+)/.exec(err);
			if (m)
				ok(m[1]);
		});
		chrome.on('exit', (c) => ko(new Error('chromium exited ' + c + ': ' + err.slice(-500))));
	});
	await devtools(wsUrl);
}

async function stop() {
	try {
		await screenshot();
	} catch (e) {
		console.log('screenshot failed: ' + e.message);
	}
	if (chrome)
		chrome.kill('SIGTERM');
	process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
main().catch((e) => {
	console.log('error: ' + e.message);
	if (chrome)
		chrome.kill('SIGKILL');
	process.exit(1);
});
