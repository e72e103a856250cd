package webhooker

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
)

// APIVersion is the api_version of the Castle webhook envelope.
const APIVersion = "v1"

// castleTime is Castle's created_at format (UTC, milliseconds).
const castleTime = "2006-01-02T15:04:05.000Z"

// deliveryNamespace is the UUIDv5 namespace of delivery ids.
var deliveryNamespace = uuid.MustParse("5b0b9a4e-8f7c-4d6e-9a51-6d6f61742d77")

// DeliveryID returns the id of the delivery of notification notificationID
// of app appID to endpoint endpointID: a name-based UUID (v5), the same on
// every attempt, replay and worker.
func DeliveryID(appID, endpointID, notificationID string) string {
	return uuid.NewSHA1(deliveryNamespace, []byte(appID+"\x00"+endpointID+"\x00"+notificationID)).String()
}

// envelope is Castle's webhook body.
type envelope struct {
	APIVersion string          `json:"api_version"`
	AppID      string          `json:"app_id"`
	Type       string          `json:"type"`
	CreatedAt  string          `json:"created_at"`
	Data       json.RawMessage `json:"data"`
}

// Body returns the request body for n: the Castle envelope
// {"api_version":"v1","app_id":...,"type":...,"created_at":...,"data":...}
// with n.Data as data (an empty object when n has none). The same
// notification always gives the same bytes.
func Body(n *schemas.Notification) ([]byte, error) {
	data := n.Data
	if len(bytes.TrimSpace(data)) == 0 {
		data = json.RawMessage(`{}`)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(envelope{
		APIVersion: APIVersion,
		AppID:      n.AppID,
		Type:       n.Type,
		CreatedAt:  n.CreatedAt.UTC().Format(castleTime),
		Data:       data,
	})
	if err != nil {
		return nil, fmt.Errorf("webhooker: encode notification %s: %w", n.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
