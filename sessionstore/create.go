package sessionstore

// Creation is a new upload as Uploads.CreateReserved stores it: the
// session and its asset, the quota hold it starts with and its created
// event, written in one atomic step. Three separate writes made every
// creation wait for three commits of the store (on the embedded store,
// three group commits with their fsyncs) one after the other.
type Creation struct {
	Session Session
	// Asset is stored as CreateUpload stores it (ID "": none).
	Asset Asset
	// Reserve is the hold of Session.ID in Session.Account's quota, made
	// as ReserveQuota makes it, against the account's limits with
	// Defaults where it has none of its own.
	Reserve  int64
	Defaults QuotaLimits
	// Event, when set, is queued for Session.Account's endpoints as
	// EnqueueWebhookEvent queues it.
	Event *WebhookEvent
}
