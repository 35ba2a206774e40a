// Every method of the official OpenMeter Node SDK for meters, events, subjects, features, entitlements,
// grants and portal tokens, against a live creditgate server on an empty database whose clock stands at
// 2024-01-15T12:00:30Z (tests/rest/test_node_sdk.py starts it).
// Env: CREDITGATE_URL, CREDITGATE_API_KEY. Run: node sdk_flow.mjs (exits non-zero when a test fails).
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { OpenMeter, WindowSize } from '@openmeter/sdk'

const baseUrl = process.env.CREDITGATE_URL
const token = process.env.CREDITGATE_API_KEY
if (!baseUrl || !token) {
  console.error('set CREDITGATE_URL and CREDITGATE_API_KEY')
  process.exit(2)
}
const om = new OpenMeter({ baseUrl, token })
const DAY = '2024-01-15T00:00:00Z'
const NOW_MINUTE = '2024-01-15T12:00:00Z'

async function rejects(promise, status) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.name, 'HttpError')
    assert.equal(err.statusCode, status)
    assert.equal(err.problem?.status, status) // problem+json, read by the SDK
    return true
  })
}

const tokensEvent = (subject, time, tokens, model = 'gpt') => ({
  type: 'tokens', subject, source: 'node-sdk', time: new Date(time), data: { tokens, model },
})

test('meters: create, get, list', async () => {
  const meter = await om.meters.create({
    slug: 'tokens_total', eventType: 'tokens', aggregation: 'SUM', valueProperty: '$.tokens',
    groupBy: { model: '$.model' }, windowSize: WindowSize.MINUTE,
  })
  assert.equal(meter.slug, 'tokens_total')
  assert.equal(meter.aggregation, 'SUM')
  assert.deepEqual(meter.groupBy, { model: '$.model' })
  assert.equal((await om.meters.get('tokens_total')).id, meter.id)
  assert.equal((await om.meters.get(meter.id)).slug, 'tokens_total')
  assert.deepEqual((await om.meters.list()).map((m) => m.slug), ['tokens_total'])
  await rejects(om.meters.get('missing'), 404)
  await rejects(om.meters.create({ slug: 'tokens_total', eventType: 'x', aggregation: 'COUNT' }), 409)
})

test('events: ingest one and a batch, list', async () => {
  assert.equal(await om.events.ingest({ id: 'e1', ...tokensEvent('cust-1', '2024-01-15T11:00:10Z', 3) }), undefined)
  await om.events.ingest([
    { id: 'e2', ...tokensEvent('cust-1', '2024-01-15T11:30:00Z', 4, 'claude') },
    { id: 'e3', ...tokensEvent('cust-2', '2024-01-15T11:45:00Z', 5) },
    { id: 'e1', ...tokensEvent('cust-1', '2024-01-15T11:00:10Z', 3) }, // a duplicate: skipped
    tokensEvent('cust-1', '2024-01-15T10:59:00Z', 1), // the SDK generates id and specversion
  ])
  const listed = await om.events.list({ limit: 10 })
  assert.equal(listed.length, 4)
  const e2 = listed.find((e) => e.event.id === 'e2')
  assert.equal(e2.event.subject, 'cust-1')
  assert.equal(e2.event.source, 'node-sdk')
  assert.equal(e2.event.specversion, '1.0')
  assert.equal(e2.event.time, '2024-01-15T11:30:00Z')
  assert.deepEqual(e2.event.data, { tokens: 4, model: 'claude' })
  assert.ok(e2.ingestedAt)
  assert.equal((await om.events.list({ limit: 1 })).length, 1)
  await rejects(om.events.ingest({ type: 'tokens', subject: '', data: {} }), 400)
})

test('meters: query and subjects', async () => {
  const all = await om.meters.query('tokens_total', { from: new Date(DAY), to: new Date('2024-01-15T12:00:00Z') })
  assert.deepEqual(all.data.map((r) => r.value), [13])
  const hourly = await om.meters.query('tokens_total', {
    windowSize: WindowSize.HOUR, subject: ['cust-1'], groupBy: ['model'],
    from: new Date(DAY), to: new Date('2024-01-15T12:00:00Z'),
  })
  const rows = hourly.data.map((r) => [r.windowStart, r.subject, r.groupBy.model, r.value])
  assert.deepEqual(rows.sort(), [
    ['2024-01-15T10:00:00Z', 'cust-1', 'gpt', 1],
    ['2024-01-15T11:00:00Z', 'cust-1', 'claude', 4],
    ['2024-01-15T11:00:00Z', 'cust-1', 'gpt', 3],
  ])
  const filtered = await om.meters.query('tokens_total', {
    filterGroupBy: { model: 'gpt' }, windowSize: WindowSize.DAY, windowTimeZone: 'UTC',
  })
  assert.deepEqual(filtered.data.map((r) => r.value), [9])
  assert.deepEqual((await om.meters.subjects('tokens_total')).sort(), ['cust-1', 'cust-2'])
  await rejects(om.meters.query('tokens_total', { windowTimeZone: 'Nowhere/Land', windowSize: WindowSize.DAY }), 400)
  await rejects(om.meters.query('missing'), 404)
})

test('subjects: upsert, get, list, delete', async () => {
  const [made] = await om.subjects.upsert([{ key: 'cust-1', displayName: 'Customer One', metadata: { tier: 'pro' } }])
  assert.equal(made.key, 'cust-1')
  assert.equal(made.displayName, 'Customer One')
  assert.deepEqual(made.metadata, { tier: 'pro' })
  const [again] = await om.subjects.upsert([{ key: 'cust-1', displayName: 'Customer 1' }])
  assert.equal(again.id, made.id)
  assert.equal((await om.subjects.get('cust-1')).displayName, 'Customer 1')
  assert.equal((await om.subjects.get(made.id)).key, 'cust-1')
  await om.subjects.upsert([{ key: 'gone' }])
  assert.deepEqual((await om.subjects.list()).map((s) => s.key).sort(), ['cust-1', 'gone'])
  assert.equal(await om.subjects.delete('gone'), undefined)
  await rejects(om.subjects.get('gone'), 404)
})

test('features: create, get by id or key, list, delete by key or id', async () => {
  const ai = await om.features.create({ key: 'ai', name: 'AI tokens', meterSlug: 'tokens_total',
    meterGroupByFilters: { model: 'gpt' } })
  assert.equal(ai.meterSlug, 'tokens_total')
  assert.deepEqual(ai.meterGroupByFilters, { model: 'gpt' })
  const sso = await om.features.create({ key: 'sso', name: 'SSO', metadata: { plan: 'pro' } })
  const seats = await om.features.create({ key: 'seats', name: 'Seats' })
  assert.equal((await om.features.get('ai')).id, ai.id)
  assert.equal((await om.features.get(sso.id)).key, 'sso')
  const listed = await om.features.list({ limit: 10, offset: 0, orderBy: 'createdAt' })
  assert.deepEqual(listed.map((f) => f.key), ['ai', 'sso', 'seats'])
  assert.deepEqual((await om.features.list({ meterSlug: ['tokens_total', 'other'] })).map((f) => f.key), ['ai'])
  const old = await om.features.create({ key: 'old', name: 'Old' })
  assert.equal(await om.features.delete('old'), undefined) // by key
  await rejects(om.features.delete('old'), 404)
  await rejects(om.features.get('old'), 404)
  const old2 = await om.features.create({ key: 'old', name: 'Old again' })
  await om.features.delete(old2.id) // by id
  const archived = await om.features.list({ includeArchived: true })
  assert.deepEqual(archived.filter((f) => f.archivedAt).map((f) => f.id).sort(), [old.id, old2.id].sort())
  await rejects(om.features.create({ key: 'Bad Key', name: 'x' }), 400)
  await rejects(om.features.create({ key: 'ai', name: 'dup' }), 409)
  assert.equal(seats.key, 'seats')
})

let metered

test('entitlements: create, list, get, values, history, reset', async () => {
  metered = await om.subjects.createEntitlement('cust-1', {
    type: 'metered', featureKey: 'ai', usagePeriod: { interval: 'DAY', anchor: DAY },
    measureUsageFrom: DAY, issueAfterReset: 10, metadata: { plan: 'pro' },
  })
  assert.equal(metered.type, 'metered')
  assert.equal(metered.subjectKey, 'cust-1')
  assert.deepEqual(metered.usagePeriod, { interval: 'DAY', anchor: DAY })
  assert.deepEqual(metered.currentUsagePeriod, { from: DAY, to: '2024-01-16T00:00:00Z' })
  const bool = await om.subjects.createEntitlement('cust-1', { type: 'boolean', featureKey: 'sso' })
  const stat = await om.subjects.createEntitlement('cust-1', { type: 'static', featureKey: 'seats',
    config: JSON.stringify({ seats: 5 }) })
  assert.equal(JSON.parse(stat.config).seats, 5)
  await rejects(om.subjects.createEntitlement('cust-1', { type: 'boolean', featureKey: 'sso' }), 409)
  await rejects(om.subjects.createEntitlement('cust-1', { type: 'boolean', featureKey: 'nope' }), 404)

  const mine = await om.subjects.listEntitlements('cust-1')
  assert.deepEqual(mine.map((e) => e.id).sort(), [metered.id, bool.id, stat.id].sort())
  assert.equal((await om.subjects.listEntitlements('cust-1', { includeDeleted: true })).length, 3)
  assert.equal((await om.subjects.getEntitlement('cust-1', metered.id)).featureKey, 'ai')
  await rejects(om.subjects.getEntitlement('cust-2', metered.id), 404)

  // usage of feature `ai` counts model=gpt only: 1 + 3 = 4 of the issueAfterReset grant of 10
  for (const ref of [metered.id, 'ai']) {
    const v = await om.subjects.getEntitlementValue('cust-1', ref)
    assert.deepEqual(v, { hasAccess: true, balance: 6, usage: 4, overage: 0 })
  }
  const past = await om.subjects.getEntitlementValueAt('cust-1', 'ai', new Date('2024-01-15T11:00:00Z'))
  assert.equal(past.usage, 1)
  assert.deepEqual(await om.subjects.getEntitlementValue('cust-1', 'sso'), { hasAccess: true })
  assert.equal(JSON.parse((await om.subjects.getEntitlementValue('cust-1', 'seats')).config).seats, 5)
  await rejects(om.subjects.getEntitlementValue('cust-1', 'nope'), 404)

  for (const ref of [metered.id, 'ai']) {
    const h = await om.subjects.getEntitlementHistory('cust-1', ref, { windowSize: 'HOUR', from: DAY,
      to: NOW_MINUTE, windowTimeZone: 'UTC' })
    assert.deepEqual(h.windowedHistory.map((w) => [w.period.from, w.usage]),
      [['2024-01-15T10:00:00Z', 1], ['2024-01-15T11:00:00Z', 3]])
    assert.equal(h.burndownHistory[0].balanceAtStart, 10)
  }
  await rejects(om.subjects.getEntitlementHistory('cust-1', metered.id, { windowSize: 'YEAR' }), 400)

  assert.equal(await om.subjects.resetEntitlementUsage('cust-1', 'ai', { retainAnchor: true }), undefined)
  const after = await om.subjects.getEntitlement('cust-1', metered.id)
  assert.equal(after.lastReset, NOW_MINUTE)
  assert.deepEqual(after.usagePeriod, { interval: 'DAY', anchor: DAY })
  assert.deepEqual(await om.subjects.getEntitlementValue('cust-1', 'ai'), { hasAccess: true, balance: 10, usage: 0,
    overage: 0 })
  await rejects(om.subjects.resetEntitlementUsage('cust-1', bool.id, {}), 400)
})

test('grants: create and list by id or feature key, list all, void', async () => {
  const input = { amount: 100, priority: 2, effectiveAt: NOW_MINUTE, expiration: { duration: 'MONTH', count: 1 },
    recurrence: { interval: 'DAY', anchor: DAY }, minRolloverAmount: 0, maxRolloverAmount: 50, metadata: { k: 'v' } }
  const byKey = await om.subjects.createEntitlementGrant('cust-1', 'ai', input)
  assert.equal(byKey.entitlementId, metered.id)
  assert.equal(byKey.expiresAt, '2024-02-15T12:00:00Z')
  assert.equal(byKey.nextRecurrence, '2024-01-16T00:00:00Z')
  const byId = await om.subjects.createEntitlementGrant('cust-1', metered.id, { ...input, amount: 1 })
  for (const ref of [metered.id, 'ai']) {
    const listed = await om.subjects.listEntitlementGrants('cust-1', ref, { includeDeleted: false, orderBy: 'createdAt' })
    assert.deepEqual(listed.map((g) => g.id).filter((id) => id === byKey.id || id === byId.id), [byKey.id, byId.id])
    assert.equal(listed.length, 3) // and the issueAfterReset grant
  }
  assert.equal((await om.grants.list({ limit: 100 })).length, 3)
  assert.equal((await om.grants.list({ includeDeleted: true, orderBy: 'createdAt' })).length, 3)
  assert.equal(await om.grants.delete(byId.id), undefined)
  const voided = (await om.grants.list()).find((g) => g.id === byId.id)
  assert.equal(voided.voidedAt, NOW_MINUTE)
  await rejects(om.grants.delete(byId.id), 400)
  await rejects(om.grants.delete('01HZZZZZZZZZZZZZZZZZZZZZZZ'), 404)
  await rejects(om.subjects.createEntitlementGrant('cust-1', 'sso', input), 400)
  await rejects(om.subjects.createEntitlementGrant('cust-1', 'ai', { ...input, amount: -1 }), 400)
})

test('entitlements: list all, get by id, override, delete', async () => {
  const all = await om.entitlements.list({ limit: 100, offset: 0, orderBy: 'createdAt' })
  assert.equal(all.length, 3)
  const filtered = await om.entitlements.list({ subject: ['cust-1', 'cust-9'], feature: ['ai', 'sso'],
    entitlementType: ['metered'] })
  assert.deepEqual(filtered.map((e) => e.id), [metered.id])
  assert.equal((await om.entitlements.list({ subject: ['cust-2'] })).length, 0)
  assert.equal((await om.grants.list({ subject: ['cust-1'], feature: [metered.featureId] })).length, 3)
  assert.equal((await om.grants.list({ feature: ['sso'] })).length, 0)
  assert.equal((await om.entitlements.get(metered.id)).subjectKey, 'cust-1')
  await rejects(om.entitlements.get('01HZZZZZZZZZZZZZZZZZZZZZZZ'), 404)

  const next = await om.subjects.overrideEntitlement('cust-1', 'sso', { type: 'static', featureKey: 'sso',
    config: JSON.stringify({ level: 2 }) })
  assert.equal(next.type, 'static')
  assert.equal(JSON.parse((await om.subjects.getEntitlementValue('cust-1', 'sso')).config).level, 2)
  const withDeleted = await om.subjects.listEntitlements('cust-1', { includeDeleted: true })
  assert.equal(withDeleted.filter((e) => e.featureKey === 'sso').length, 2)
  await rejects(om.subjects.overrideEntitlement('cust-2', 'sso', { type: 'boolean', featureKey: 'sso' }), 404)

  assert.equal(await om.subjects.deleteEntitlement('cust-1', next.id), undefined)
  await rejects(om.subjects.deleteEntitlement('cust-1', next.id), 404)
  await rejects(om.subjects.getEntitlementValue('cust-1', 'sso'), 404)
})

test('portal tokens: create, use, invalidate', async () => {
  // a token reads every meter of its subject: a meter allow-list is refused, clearly
  await rejects(om.portal.createToken({ subject: 'cust-1', allowedMeterSlugs: ['tokens_total'] }), 400)
  const created = await om.portal.createToken({ subject: 'cust-1' })
  assert.equal(created.subject, 'cust-1')
  assert.ok(created.token)
  assert.equal(created.expired, false)
  const portal = new OpenMeter({ baseUrl, token: created.token })
  assert.equal((await portal.subjects.getEntitlementValue('cust-1', 'ai')).balance, 110) // 10 + the grant of 100
  assert.ok((await portal.subjects.listEntitlementGrants('cust-1', 'ai')).length >= 1)
  await rejects(portal.subjects.getEntitlementValue('cust-2', 'ai'), 403)
  await rejects(portal.features.list(), 403)
  const other = await om.portal.createToken({ subject: 'cust-2', expiresAt: new Date('2024-01-15T13:00:00Z') })
  assert.equal(other.expiresAt, '2024-01-15T13:00:00Z')
  assert.equal(await om.portal.invalidateTokens({ subject: 'cust-1' }), undefined)
  await rejects(portal.subjects.getEntitlementValue('cust-1', 'ai'), 401)
  const stillValid = new OpenMeter({ baseUrl, token: other.token })
  assert.equal((await stillValid.subjects.getEntitlementValue('cust-2', 'ai').catch((e) => e)).statusCode, 404)
  await rejects(om.portal.invalidateTokens(), 400) // "invalidate all" needs naming a subject (docs/rest.md)
  await om.portal.invalidateTokens({ subject: 'cust-2' })
  await rejects(stillValid.subjects.getEntitlementValue('cust-2', 'ai'), 401)
})

test('credentials: a wrong key is 401', async () => {
  const wrong = new OpenMeter({ baseUrl, token: 'wrong' })
  await rejects(wrong.meters.list(), 401)
})
