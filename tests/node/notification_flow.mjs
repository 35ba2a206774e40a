// The official OpenMeter Node SDK's `notification` client (channels, rules, events) against a live creditgate
// server on an empty database whose clock stands at 2024-01-15T12:00:30Z (tests/rest/test_node_sdk.py starts it).
// The SDK has no method for a rule test, so the event comes from POST /notification/rules/{id}/test (fetch).
// Env: CREDITGATE_URL, CREDITGATE_API_KEY. Run: node notification_flow.mjs (exits non-zero when a test fails).
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { OpenMeter } from '@openmeter/sdk'

const baseUrl = process.env.CREDITGATE_URL
const token = process.env.CREDITGATE_API_KEY
if (!baseUrl || !token) {
  console.error('set CREDITGATE_URL and CREDITGATE_API_KEY')
  process.exit(2)
}
const om = new OpenMeter({ baseUrl, token })
const SECRET = 'whsec_' + Buffer.from('0123456789abcdef01234567').toString('base64')

async function rejects(promise, status) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, 'HttpError')
    assert.equal(err.statusCode, status)
    assert.equal(err.problem?.status, status) // problem+json, read by the SDK
    return true
  })
}

const state = {}

test('set up a metered entitlement', async () => {
  await om.meters.create({ slug: 'tokens', eventType: 'tokens', aggregation: 'SUM', valueProperty: '$.tokens' })
  state.feature = await om.features.create({ key: 'ai', name: 'AI tokens', meterSlug: 'tokens' })
  state.ent = await om.subjects.createEntitlement('cust', {
    type: 'metered', featureKey: 'ai', usagePeriod: { interval: 'MONTH', anchor: '2024-01-01T00:00:00Z' },
  })
  await om.subjects.createEntitlementGrant('cust', 'ai', {
    amount: 100, effectiveAt: '2024-01-15T12:00:00Z', expiration: { duration: 'YEAR', count: 1 },
  })
})

test('channels: create, get, list, delete', async () => {
  const channel = await om.notification.channels.create({
    type: 'WEBHOOK', name: 'customer-webhook', url: 'https://example.com/webhook',
    customHeaders: { 'X-Env': 'test' },
  })
  assert.equal(channel.type, 'WEBHOOK')
  assert.equal(channel.name, 'customer-webhook')
  assert.deepEqual(channel.customHeaders, { 'X-Env': 'test' })
  assert.match(channel.signingSecret, /^whsec_[A-Za-z0-9+/]+=*$/)
  assert.equal(channel.disabled, false)
  assert.equal(channel.createdAt, '2024-01-15T12:00:30Z')
  state.channel = channel

  const spare = await om.notification.channels.create({
    type: 'WEBHOOK', name: 'spare', url: 'http://127.0.0.1:9/hook', signingSecret: SECRET,
  })
  assert.equal(spare.signingSecret, SECRET)
  assert.deepEqual(await om.notification.channels.get(channel.id), channel)

  const listed = await om.notification.channels.list()
  assert.deepEqual(listed.items.map((c) => c.id), [channel.id, spare.id])
  assert.equal(listed.totalCount, 2)
  assert.equal(listed.page, 1)
  const page2 = await om.notification.channels.list({ page: 2, pageSize: 1 })
  assert.deepEqual(page2.items.map((c) => c.id), [spare.id])
  assert.equal(page2.totalCount, 2)

  assert.equal(await om.notification.channels.delete(spare.id), undefined)
  assert.ok((await om.notification.channels.get(spare.id)).deletedAt)
  assert.deepEqual((await om.notification.channels.list()).items.map((c) => c.id), [channel.id])
  const withDeleted = await om.notification.channels.list({ includeDeleted: true })
  assert.equal(withDeleted.totalCount, 2)

  await rejects(om.notification.channels.delete(spare.id), 404)
  await rejects(om.notification.channels.get('01J00000000000000000000000'), 404)
  await rejects(om.notification.channels.create({ type: 'WEBHOOK', name: 'x', url: 'ftp://example.com' }), 400)
  await rejects(om.notification.channels.create({
    type: 'WEBHOOK', name: 'x', url: 'https://example.com', signingSecret: 'not-a-secret',
  }), 400)
})

test('rules: create, get, list, delete', async () => {
  const rule = await om.notification.rules.create({
    type: 'entitlements.balance.threshold', name: 'Balance threshold reached', channels: [state.channel.id],
    thresholds: [{ value: 90, type: 'PERCENT' }, { value: 50, type: 'NUMBER' }], features: ['ai'],
  })
  assert.equal(rule.type, 'entitlements.balance.threshold')
  assert.deepEqual(rule.channels, [{ id: state.channel.id, type: 'WEBHOOK' }])
  assert.deepEqual(rule.features, [{ id: state.feature.id, key: 'ai' }])
  assert.deepEqual(rule.thresholds, [{ value: 90, type: 'PERCENT' }, { value: 50, type: 'NUMBER' }])
  assert.equal(rule.disabled, false)
  state.rule = rule

  const spare = await om.notification.rules.create({
    type: 'entitlements.balance.threshold', name: 'every feature', channels: [state.channel.id],
    thresholds: [{ value: 100, type: 'PERCENT' }],
  })
  assert.equal(spare.features, undefined)
  assert.deepEqual(await om.notification.rules.get(rule.id), rule)
  const listed = await om.notification.rules.list()
  assert.deepEqual(listed.items.map((r) => r.id), [rule.id, spare.id])
  assert.equal(listed.totalCount, 2)
  const byChannel = await om.notification.rules.list({ channel: [state.channel.id], pageSize: 1 })
  assert.deepEqual(byChannel.items.map((r) => r.id), [rule.id])
  assert.equal(byChannel.totalCount, 2)

  assert.equal(await om.notification.rules.delete(spare.id), undefined)
  assert.deepEqual((await om.notification.rules.list()).items.map((r) => r.id), [rule.id])
  await rejects(om.notification.rules.delete(spare.id), 404)
  await rejects(om.notification.rules.get('01J00000000000000000000000'), 404)
  for (const thresholds of [[], [{ value: 0, type: 'NUMBER' }], [{ value: 5, type: 'NUMBER' }, { value: 5, type: 'NUMBER' }]]) {
    await rejects(om.notification.rules.create({
      type: 'entitlements.balance.threshold', name: 'bad', channels: [state.channel.id], thresholds,
    }), 400)
  }
  await rejects(om.notification.rules.create({
    type: 'entitlements.balance.threshold', name: 'bad', channels: [state.channel.id],
    thresholds: [{ value: 1, type: 'NUMBER' }], features: ['nope'],
  }), 404)
  // the channel is in use by an enabled rule
  await rejects(om.notification.channels.delete(state.channel.id), 409)
})

test('events: list and get (an event from a rule test)', async () => {
  const resp = await fetch(`${baseUrl}/api/v1/notification/rules/${state.rule.id}/test`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
  })
  assert.equal(resp.status, 201)
  const made = await resp.json()

  const listed = await om.notification.events.list()
  assert.equal(listed.totalCount, 1)
  assert.deepEqual(listed.items.map((e) => e.id), [made.id])
  const event = await om.notification.events.get(made.id)
  assert.deepEqual(event, made)
  assert.equal(event.type, 'entitlements.balance.threshold')
  assert.deepEqual(event.rule, state.rule)
  assert.deepEqual(event.annotations, { test: true })
  assert.deepEqual(event.deliveryStatus.map((d) => [d.channel.id, d.state]), [[state.channel.id, 'PENDING']])
  assert.equal(event.payload.id, event.id)
  assert.equal(event.payload.type, 'entitlements.balance.threshold')
  assert.equal(event.payload.data.entitlement.id, state.ent.id)
  assert.deepEqual(event.payload.data.feature, state.feature)
  assert.equal(event.payload.data.subject.key, 'cust')
  assert.deepEqual(event.payload.data.value, { hasAccess: true, balance: 100, usage: 0, overage: 0 })

  assert.equal((await om.notification.events.list({ subject: ['cust'], feature: ['ai'] })).totalCount, 1)
  assert.equal((await om.notification.events.list({ rule: [state.rule.id] })).totalCount, 1)
  assert.equal((await om.notification.events.list({ subject: ['someone-else'] })).totalCount, 0)
  assert.equal((await om.notification.events.list({ from: '2024-01-15T12:00:00Z', to: '2024-01-15T12:01:00Z' }))
    .totalCount, 1)
  assert.deepEqual((await om.notification.events.list({ page: 2, pageSize: 1 })).items, [])
  await rejects(om.notification.events.get('01J00000000000000000000000'), 404)
})
