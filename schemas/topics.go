package schemas

// Topics of the log. The version is part of the name: an incompatible change
// of a record gets a new topic, never a silent change of an old one.
const (
	// TopicEvents carries Event records from ingest, keyed by Event.Key.
	TopicEvents = "moat.events.v1"
	// TopicDecisions carries Decision records from the scorer, keyed like
	// the event they decide.
	TopicDecisions = "moat.decisions.v1"
	// TopicIncidents carries Notification records (webhook-worthy facts).
	TopicIncidents = "moat.incidents.v1"
	// TopicReplies carries the decisions of synchronous calls (risk, filter,
	// authenticate) back to the ingest instance named in Event.ReplyTo.
	// Every ingest instance reads it from its end; it needs little
	// retention.
	TopicReplies = "moat.replies.v1"
	// TopicScorerState is the scorer's changelog: the latest state of each
	// user, keyed and partitioned exactly like TopicEvents, written in the
	// same transaction as the decisions. Compacted. A scorer that takes over
	// a partition restores its users from it instead of re-reading all
	// history.
	TopicScorerState = "moat.scorer-state.v1"
	// TopicDeadLetter carries records a role could not process at all
	// (undecodable input), with the reason in the HeaderError header, so
	// that nothing is dropped silently.
	TopicDeadLetter = "moat.deadletter.v1"
	// TopicEndpoints is the registry of webhook endpoints managed through
	// the API (internal/endpoints): one record per endpoint, keyed by app id
	// and endpoint id, each create or update the endpoint's whole new state,
	// a delete a tombstone. Compacted and kept forever; signing secrets are
	// stored encrypted. Tombstones are kept 7 days (delete.retention.ms), as
	// long as a pending webhook retry may still name the endpoint.
	TopicEndpoints = "moat.endpoints.v1"
	// TopicLists carries ListRecord records: the latest state of each of
	// the apps' lists and list items, keyed by ListKey / ListItemKey and
	// partitioned by the list (ListPartitionKey), a deletion a tombstone.
	// Compacted and kept forever: the api and scorer roles rebuild their
	// in-memory lists from it.
	TopicLists = "moat.lists.v1"
	// TopicPrivacy is the registry of forgotten users (internal/privacy):
	// one record per deleted identifier, keyed by a keyed hash (HMAC-SHA256
	// under the device key) of app id, identifier type and identifier, its
	// value the type and when it was deleted. The raw user id or email is
	// never on it. Compacted and kept forever: the scorer, the projector and
	// the api skip the users it names, so a replay of the log forgets them
	// again.
	TopicPrivacy = "moat.privacy.v1"
	// TopicObservations carries Observation records: what each scored
	// event tells the cross-user state about its IP, device and mailbox,
	// keyed by SharedKey so that each key meets one aggregator. The scorer
	// writes them in the transaction of the event's decision.
	TopicObservations = "moat.observations.v1"
	// TopicShared is the aggregator's table of cross-user state: the latest
	// entry of each IP, device and mailbox (risk.SharedEntry), keyed like
	// TopicObservations and partitioned exactly like it, an evicted key a
	// tombstone. Compacted. Every scorer follows all of it (a global table)
	// to compute the cross-user signals; the aggregator restores its
	// partitions from it.
	TopicShared = "moat.shared.v1"
)

// Consumer groups. Renaming one makes its role re-consume the whole
// retained log from the start: never rename them casually.
const (
	GroupScorer    = "moat-scorer"
	GroupProjector = "moat-projector"
	GroupWebhooker = "moat-webhooker"
	// GroupAggregator folds TopicObservations into TopicShared.
	GroupAggregator = "moat-aggregator"
)

// Record header names used on every topic.
const (
	// HeaderSchema names the record's schema and version, e.g. "event.v1".
	HeaderSchema = "moat-schema"
	// HeaderError carries the reason a record went to TopicDeadLetter.
	HeaderError = "moat-error"
	// HeaderSource names the topic/partition/offset a dead letter came from.
	HeaderSource = "moat-source"
)

// TopicSpec is a topic and the configs it needs beyond the defaults.
type TopicSpec struct {
	Name    string
	Configs map[string]string
}

// AllTopics lists every topic Moat creates at start-up. The changelog and
// the endpoints registry are compacted (only each key's latest state
// matters, kept forever); replies are only useful for seconds.
func AllTopics() []TopicSpec {
	return []TopicSpec{
		{Name: TopicEvents},
		{Name: TopicDecisions},
		{Name: TopicIncidents},
		{Name: TopicDeadLetter},
		{Name: TopicReplies, Configs: map[string]string{"retention.ms": "3600000"}},
		{Name: TopicScorerState, Configs: map[string]string{"cleanup.policy": "compact", "retention.ms": "-1"}},
		{Name: TopicLists, Configs: map[string]string{"cleanup.policy": "compact", "retention.ms": "-1"}},
		{Name: TopicPrivacy, Configs: map[string]string{"cleanup.policy": "compact", "retention.ms": "-1"}},
		{Name: TopicObservations},
		{Name: TopicShared, Configs: map[string]string{"cleanup.policy": "compact", "retention.ms": "-1"}},
		{Name: TopicEndpoints, Configs: map[string]string{"cleanup.policy": "compact", "retention.ms": "-1", "delete.retention.ms": "604800000"}},
	}
}
