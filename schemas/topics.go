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
	// TopicDeadLetter carries records a role could not process at all
	// (undecodable input), with the reason in the HeaderError header, so
	// that nothing is dropped silently.
	TopicDeadLetter = "moat.deadletter.v1"
)

// Consumer groups. Renaming one makes its role re-consume the whole
// retained log from the start: never rename them casually.
const (
	GroupScorer    = "moat-scorer"
	GroupProjector = "moat-projector"
	GroupWebhooker = "moat-webhooker"
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

// AllTopics lists every topic Moat creates at start-up.
func AllTopics() []string {
	return []string{TopicEvents, TopicDecisions, TopicIncidents, TopicDeadLetter}
}
