// Package webhooker delivers Moat's notifications to the apps' webhook
// endpoints: it consumes schemas.TopicIncidents with
// github.com/segmentio/kafka-go as group schemas.GroupWebhooker, the way a
// downstream subscriber would, and POSTs each notification to every
// endpoint of its app that subscribed to its type.
//
// # Endpoints
//
// An app's endpoints come from two places: the apps file (apps.Webhook,
// read once at start-up) and the registry of endpoints managed through the
// API (internal/endpoints, given with WithEndpoints), which the worker
// follows live. When the registry changes, the next notification goes to
// the new set, without a restart:
//
//   - a created endpoint gets every notification fetched after the worker
//     saw it (the API answers once the registry applied the write; the
//     worker's copy follows within milliseconds);
//   - an updated endpoint (URL, types, secrets) applies to new
//     notifications and to pending retries, which name their endpoint by
//     id; attempts already in flight finish with the old settings. The
//     circuit breaker's state survives a change that keeps the URL;
//   - a disabled endpoint gets no new notifications; a retry of it that
//     comes due is dead-lettered ("endpoint disabled"), to be replayed
//     once it is enabled again;
//   - a deleted endpoint gets nothing more: its pending retries are
//     dropped (not dead-lettered) with a delivery-log row of outcome
//     OutcomeDropped and error "endpoint deleted". The registry remembers
//     deletions for as long as the topic keeps tombstones (7 days, longer
//     than any retry waits); a retry naming an endpoint that is unknown
//     for any other reason (removed from the apps file) is dead-lettered
//     as before.
//
// A notification with an EndpointID (the API's test notification,
// $webhook.test) goes to that endpoint only, whatever types it subscribed
// to and even when disabled; when the endpoint does not exist it is
// dropped. An apps-file endpoint wins over a registry endpoint with the
// same id, and registry endpoints of apps missing from the apps file are
// ignored. API-managed endpoints are always signed with their own secrets,
// never the app's API secret: when the registry cannot decrypt them (no or
// another --endpoints-key) their deliveries are dead-lettered with that
// reason. Their deliveries may reach private addresses only when the app
// has allow_private_endpoints.
//
// # Requests
//
// The body is Castle's envelope
//
//	{"api_version":"v1","app_id":"…","type":"$incident.confirmed","created_at":"2024-01-02T03:04:05.678Z","data":{…}}
//
// with Notification.Data as data (see Body). Headers:
//
//	X-Castle-Signature  base64(HMAC-SHA256(secret, raw body)), first secret
//	X-Moat-Signature    t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>[,v1=…]
//	X-Moat-Delivery-Id  stable per notification and endpoint (DeliveryID)
//	Idempotency-Key     the delivery id again
//	X-Moat-Attempt      1, 2, …
//
// The secret is the endpoint's (the first of Webhook.Secrets for the Castle
// header, every one of them for X-Moat-Signature so a receiver can rotate;
// for an API-managed endpoint, its newest secret first), or the app's API
// secret when an apps-file endpoint has none, as Castle does.
//
// Verifying a delivery: the official Castle SDKs check X-Castle-Signature
// (Verify does the same). It signs no timestamp, so a captured request can
// be replayed: receivers that can should check X-Moat-Signature with
// VerifyTimestamped (reject when t is more than DefaultTolerance away from
// their clock or no v1 matches any of their secrets) and ignore a
// X-Moat-Delivery-Id they have already processed, since delivery is
// at-least-once and a retry or a replay repeats the delivery id.
//
// # Outcomes and retries
//
// 2xx is delivered. Connection errors, timeouts, 5xx, 408 and 429 are
// retried; Retry-After (seconds or a date) is honoured, both for the
// delivery and by pausing the endpoint. Every other status is permanent:
// 3xx included, because redirects are never followed (a moved receiver gets
// its URL updated; following would re-send the signed body elsewhere). So
// is a refused address (see Safety). Permanent failures and deliveries that
// used their last attempt go to schemas.TopicWebhookDeadLetter with the
// last error; Replay (`moat webhooks replay`) sends them again, with the
// same delivery id and a fresh schedule.
//
// The default schedule (DefaultSchedule) gives 12 attempts over about a
// day; each retry is due after its delay plus 0–10 % jitter:
//
//	attempt  delay   due after the first (without jitter)
//	 1       -       0
//	 2       30s     30s
//	 3       2m      2m30s
//	 4       10m     12m30s
//	 5       30m     42m30s
//	 6       1h      1h42m30s
//	 7       2h      3h42m30s
//	 8       2h      5h42m30s
//	 9       2h      7h42m30s
//	10       2h      9h42m30s
//	11       2h      11h42m30s
//	12       12h     23h42m30s   then the dead letters
//
// # Durability
//
// Scheduled retries live on Kafka, not in memory: one retry topic per
// distinct delay, a tier (schemas.TopicWebhookRetry, e.g.
// moat.webhooks.retry.30s.v1), each read by its own consumer group. All the
// records of a tier have the same delay, so they come due in the order they
// were written, and the tier's reader only ever waits for the record at its
// head (jitter can hold a record behind its predecessor by at most 10 % of
// the tier delay). A Retry-After longer than the scheduled delay moves the
// retry to the smallest tier at least that long.
//
// Offsets are committed only for settled records: an incident once every
// endpoint has it delivered, dead-lettered or written to a retry tier (and
// acknowledged by all in-sync replicas); a retry record once its attempt
// settled the same way. Commits happen every CommitInterval, per partition
// up to the first unsettled record. So a crash loses nothing; it repeats
// deliveries since the last commit, with the same delivery ids.
//
// # Isolation
//
// One slow or dead endpoint never delays another endpoint or app. Every
// delivery runs in its own goroutine, with short connect and request
// timeouts. Each endpoint has its own bound of requests in flight; a
// delivery that cannot get a slot within the request timeout is deferred
// to the retry path. Each endpoint has a circuit breaker: after
// BreakerThreshold consecutive retryable failures it is sick for
// BreakerCooldown, and its deliveries go straight to the retry path without
// a request, except one probe per cooldown whose outcome closes or reopens
// the circuit. A deferral counts as an attempt, so a dead endpoint's
// deliveries still reach the dead letters after about a day. Fetching only
// stops when MaxPending records of one consumer are unsettled, and an
// unsettled record is settled within about two request timeouts, so a bad
// endpoint can hold back commits, never deliveries to others.
// Deliveries of one user's notifications run concurrently, so their order is
// not kept: receivers should order by created_at.
//
// # Safety
//
// Outbound connections are checked at dial time, after DNS resolution, by
// a net.Dialer Control: loopback, private (RFC 1918, fc00::/7), link-local,
// CGNAT, multicast, reserved and documentation addresses are refused unless
// the endpoint has AllowPrivate (the dev stack sets it for loopback); cloud
// metadata services (169.254.169.254, fd00:ec2::254, …) are refused always.
// Proxies from the environment are not used. Connect and request timeouts
// bound every attempt; at most MaxResponseBytes of a response body are read,
// then discarded. Secrets and endpoint URLs are never logged (logs name the
// app, endpoint id and host), and request errors are stripped of the URL.
//
// Every attempt, including deferrals, is written to the delivery log
// (DeliveryLog; NewClickHouseLog writes the webhook_deliveries table).
package webhooker
