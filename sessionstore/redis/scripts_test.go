package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// scriptSHA1s are the SHA-1s of the Lua scripts as every node of a running
// fleet sends them (EVALSHA). A node of this version and one of the last
// share the keys those scripts write, so a script's text, comments
// included, stays byte for byte what it was: a change here is a change of
// the fleet's wire format and needs its own migration.
var scriptSHA1s = map[string]string{
	"luaCreateDirect": "deabeb2a06627e91a23531887c8feaa78f8085ca",
	"luaClaimDirect":  "f49c9c9ca723e9bd0b55c2d95c71bd413b11cbc5",
	"luaRevokeDirect": "4f1adc6b89b8c661895d0f64048d8c19e8bc4f35",
	"luaAdoptEpoch":   "7479c1c34a40c99d9b997d4123621cda7c24e26b",
	"luaCreate":       "dce67844c18ed2359d15238cf3b538f60ce31fa7",
	"luaUnref":        "0c5b5714c9db8032142726115e415085fcfe2356",
	// The head fence added an optional ARGV (the fence a write read) and
	// the heads field luaOffsetSession grows; a node without it sends
	// no fence and never reads the field.
	"luaAcquire":       "0557d0019473004981514839a4a5e2beea870026",
	"luaOffsetSession": "3be91c5fe889efd9e5591ef679bb5fb73b744ecd",
	"luaSession":       "6023f2fc1561621f18b05cf5f82b33107d548bec",
	"luaRenew":         "1b78b01226431dbbd2450fe439b6d94ca77d4867",
	"luaDropLease":     "b11c7e740c73a560af4409219b308a3e6bbb4ab4",
	"luaRelease":       "0c5b5714c9db8032142726115e415085fcfe2356",
	"luaCommit":        "8806ed9e5a438dad1260683bddd4a82261aed00b",
	"luaSetLength":     "15e9fed0bd146828116d862f92270d6143bd4d59",
	"luaDelete":        "ac62007c658f092797152287edcf019e5b2452d3",
	"luaParts":         "b40d7d47aae9b6b488a98c198571d98c7650c2a1",
	"luaSetDuration":   "461a3db9fad6e4021cfedc4d0e9a131ee40e7452",
	"luaClaim":         "8fc1ac37adbc1286df7bdae6840ecde35251232e",
	"luaAck":           "a809196d6c6527f9d2ecf866b8099ce6aa579d60",
	"luaRetry":         "0a8a203c2ab76b6a5e00368ded68bf512026e9b8",
	"luaDead":          "93217c4bc3ae6f16fb7894d958c0278c93d5280b",
	"luaCreateKey":     "0a67bc54e07f71912d8d088908c40d238d0c4906",
	"luaKeyByHash":     "bd261b94f179b71593a5fb999561d0beed7ef24d",
	"luaRevokeKey":     "46715497e8eb5fd348f6bbadd87f4ab4c76a3655",
	"luaKeys":          "0edb80fbffeade0cf5cf6a167618c18872c2cac8",
	"luaQuotaReserve":  "1d798e5193e90b90edb05d1dbafd0d0896ff6b47",
	"luaQuotaSettle":   "1a5db052475cb1b910259cd0f1f3c728a853a207",
	"luaQuotaRelease":  "c5ff9bfb6c1e208cae6b719d086a5a14bd6d7e36",
	"luaHookClaim":     "6db1f4bacf2de235c49b91a1af8ee9c4b1381416",
	"luaHookSettle":    "48eb493cf25c405afe3c6899dfe1ad4f861680a8",
}

// TestScriptsUnchanged fails when a Lua script's text changes.
func TestScriptsUnchanged(t *testing.T) {
	scripts := map[string]*goredis.Script{
		"luaCreateDirect":  luaCreateDirect,
		"luaClaimDirect":   luaClaimDirect,
		"luaRevokeDirect":  luaRevokeDirect,
		"luaAdoptEpoch":    luaAdoptEpoch,
		"luaCreate":        luaCreate,
		"luaUnref":         luaUnref,
		"luaAcquire":       luaAcquire,
		"luaOffsetSession": luaOffsetSession,
		"luaSession":       luaSession,
		"luaRenew":         luaRenew,
		"luaDropLease":     luaDropLease,
		"luaRelease":       luaRelease,
		"luaCommit":        luaCommit,
		"luaSetLength":     luaSetLength,
		"luaDelete":        luaDelete,
		"luaParts":         luaParts,
		"luaSetDuration":   luaSetDuration,
		"luaClaim":         luaClaim,
		"luaAck":           luaAck,
		"luaRetry":         luaRetry,
		"luaDead":          luaDead,
		"luaCreateKey":     luaCreateKey,
		"luaKeyByHash":     luaKeyByHash,
		"luaRevokeKey":     luaRevokeKey,
		"luaKeys":          luaKeys,
		"luaQuotaReserve":  luaQuotaReserve,
		"luaQuotaSettle":   luaQuotaSettle,
		"luaQuotaRelease":  luaQuotaRelease,
		"luaHookClaim":     luaHookClaim,
		"luaHookSettle":    luaHookSettle,
	}
	if len(scripts) != len(scriptSHA1s) {
		t.Fatalf("%d scripts, %d pinned SHA-1s", len(scripts), len(scriptSHA1s))
	}
	for name, s := range scripts {
		if got, want := s.Hash(), scriptSHA1s[name]; got != want {
			t.Errorf("%s: SHA-1 %s, want %s: the script's text changed", name, got, want)
		}
	}
}
