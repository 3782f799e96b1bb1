package fossil

// HTTP header names of the Fossil contract.
const (
	HeaderStream           = "Fossil-Stream"
	HeaderExpectedSequence = "Fossil-Expected-Sequence-Number"
	HeaderReplace          = "Fossil-Replace"
	HeaderWaitConsumer     = "Fossil-Wait-Consumer"
	HeaderEventNumber      = "Fossil-Event-Number"
	HeaderSequenceNumber   = "Fossil-Sequence-Number"
	HeaderDuplicate        = "Fossil-Duplicate"
	HeaderTimeout          = "Fossil-Timeout"
	HeaderRewind           = "Fossil-Rewind"
	HeaderLastEventID      = "Last-Event-Id"
	HeaderLastEventNumber  = "Last-Fossil-Event-Number"
)

// Extension attribute names the server adds to every event it returns.
// Clients may not send any extension starting with [ReservedPrefix].
const (
	ReservedPrefix      = "fossil"
	ExtEventNumber      = "fossileventnumber"
	ExtSequenceInStream = "fossilsequenceinstream"
	ExtStream           = "fossilstream"
	ExtExpectAck        = "fossilexpectack"
)
