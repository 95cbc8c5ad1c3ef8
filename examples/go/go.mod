module example.com/payloadstore

go 1.19
