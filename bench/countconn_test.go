package main

import "testing"

func TestRespRequestCounter(t *testing.T) {
	stream := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$13\r\n*2\r\n$3\r\nabc\r\n\r\n" + // payload that looks like RESP
		"*1\r\n$4\r\nPING\r\n" +
		"*2\r\n$7\r\nEVALSHA\r\n$0\r\n\r\n"
	const want = 3
	for split := 0; split <= len(stream); split++ {
		var p respRequestCounter
		got := p.feed([]byte(stream[:split])) + p.feed([]byte(stream[split:]))
		if got != want {
			t.Fatalf("split at %d: counted %d commands, want %d", split, got, want)
		}
	}
	var p respRequestCounter
	var got int64
	for i := 0; i < len(stream); i++ {
		got += p.feed([]byte{stream[i]})
	}
	if got != want {
		t.Fatalf("byte by byte: counted %d commands, want %d", got, want)
	}
}
