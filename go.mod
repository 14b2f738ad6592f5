module github.com/neouptime/neo-uptime-node

go 1.26.8

require (
	github.com/gorilla/websocket v1.5.3
	golang.org/x/crypto v0.59.0
	google.golang.org/protobuf v1.36.12
)

require golang.org/x/sys v0.50.0 // indirect
